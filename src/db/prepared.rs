//! [`Prepared`]: raw SQL that diesel's statement cache keeps, unlike `sql_query`.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::sql_types::Text;

/// A statement of fixed SQL text whose parameters are all nullable text (cast in the SQL where
/// another type is meant), prepared once per connection and reused.
///
/// diesel never caches `sql_query` statements, so each would be parsed, planned and described
/// anew, costing the server work and a round trip per statement; this type names the statement
/// (`Id`) so that diesel's statement cache keeps it.
pub struct Prepared<'a, Id> {
    /// SQL with `$1`..`$n` placeholders, each standing for `params[n - 1]`.
    pub sql: std::borrow::Cow<'static, str>,
    pub params: Vec<Option<std::borrow::Cow<'a, str>>>,
    /// `false` for SQL that varies between calls of one `Id` (test builds' race window).
    pub cacheable: bool,
    id: std::marker::PhantomData<Id>,
}

impl<'a, Id> Prepared<'a, Id> {
    /// The statement `sql` with `params` (`None` binds SQL NULL), cacheable.
    pub fn new(
        sql: impl Into<std::borrow::Cow<'static, str>>,
        params: Vec<Option<std::borrow::Cow<'a, str>>>,
    ) -> Self {
        Self {
            sql: sql.into(),
            params,
            cacheable: true,
            id: std::marker::PhantomData,
        }
    }
}

impl<Id: 'static> diesel::query_builder::QueryId for Prepared<'_, Id> {
    type QueryId = Id;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<Id> diesel::query_builder::Query for Prepared<'_, Id> {
    type SqlType = diesel::sql_types::Untyped;
}

impl<Id> diesel::query_builder::QueryFragment<Pg> for Prepared<'_, Id> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        if !self.cacheable {
            out.unsafe_to_cache_prepared();
        }
        // Copy the SQL, turning each `$n` into the n-th parameter (diesel numbers them itself).
        let mut rest: &str = &self.sql;
        while let Some(dollar) = rest.find('$') {
            out.push_sql(&rest[..dollar]);
            let digits = rest[dollar + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            let index: usize = rest[dollar + 1..dollar + 1 + digits].parse().map_err(|_| {
                diesel::result::Error::QueryBuilderError("`$` without a parameter number".into())
            })?;
            let param = self.params.get(index.wrapping_sub(1)).ok_or_else(|| {
                diesel::result::Error::QueryBuilderError(format!("no parameter ${index}").into())
            })?;
            out.push_bind_param::<diesel::sql_types::Nullable<Text>, _>(param)?;
            rest = &rest[dollar + 1 + digits..];
        }
        out.push_sql(rest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Example;

    #[test]
    fn each_placeholder_becomes_a_bind_of_its_parameter_in_order() {
        let params = (1..=10).map(|n| Some(n.to_string().into())).collect();
        let query = Prepared::<Example>::new("SELECT $2, $10::int, $2", params);
        let shown = diesel::debug_query::<Pg, _>(&query).to_string();
        assert_eq!(
            shown,
            r#"SELECT $1, $2::int, $3 -- binds: [Some("2"), Some("10"), Some("2")]"#
        );
    }
}
