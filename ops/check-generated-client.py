#!/usr/bin/env python3
"""A Python client generated from /openapi.json with openapi-python-client, used as an API
consumer would: it must generate without warnings, name its models after the API (not after Rust
types), and talk to the running service: create, change through a patch that leaves fields
unset, page a list, read a 404 as a problem, delete.

usage: check-generated-client.py BASE_URL GENERATOR   (GENERATOR: the openapi-python-client
       executable; run by ops/check-schemathesis.sh with its service)
"""
import importlib
import os
import subprocess
import sys
import tempfile
import urllib.request


class Failure(Exception):
    """What the client got wrong."""


def expect(condition, message):
    if not condition:
        raise Failure(message)


def main(base_url, generator):
    work = tempfile.mkdtemp(prefix="product-service-client.")
    document = os.path.join(work, "openapi.json")
    with urllib.request.urlopen(f"{base_url}/openapi.json", timeout=10) as answer, \
            open(document, "wb") as out:
        out.write(answer.read())
    generated = subprocess.run(
        [generator, "generate", "--path", document, "--output-path", os.path.join(work, "client")],
        capture_output=True, text=True, timeout=300)
    output = generated.stdout + generated.stderr
    expect(generated.returncode == 0, f"generation failed:\n{output}")
    # Its only complaint may be that ruff (a formatter) is not installed.
    warnings = [line for line in output.splitlines()
                if "Warning" in line or "Unable" in line or "Could not" in line]
    expect(not warnings or "Warning(s) encountered" in output and all(
        "ruff" in line or "Warning(s) encountered" in line for line in warnings),
        f"generation warned:\n{output}")
    expect("Unable to parse" not in output and "Cannot parse" not in output,
           f"parts of the document were skipped:\n{output}")

    sys.path.insert(0, os.path.join(work, "client"))
    package = "product_service_client"
    models = importlib.import_module(f"{package}.models")
    names = [name for name in dir(models) if name[0].isupper()]
    for rust_name in ("BTreeMap", "HashMap", "Vec"):
        expect(not any(rust_name in name for name in names), f"a model named {names}")
    client_module = importlib.import_module(package)
    api = importlib.import_module(f"{package}.api.products")
    upsert, patch, list_, get, delete = (importlib.import_module(f"{api.__name__}.{name}")
                                         for name in ("upsert", "patch", "list_", "get", "delete"))
    client = client_module.Client(base_url=base_url)

    created = upsert.sync_detailed(client=client, body=models.ProductRequest(
        brand="Generated", serial="1", manufacturer="M", name="N", price="12.50"))
    expect(created.status_code == 201, f"upsert: {created.status_code} {created.content!r}")
    product_id = created.parsed.id
    again = upsert.sync_detailed(client=client, body=models.ProductRequest(
        brand="Generated", serial="2", manufacturer="M", name="N"))
    expect(again.status_code == 201, f"second upsert: {again.status_code}")
    # Unset fields are left out, never sent as null.
    changed = patch.sync_detailed(id=product_id, client=client,
                                  body=models.ProductPatchRequest(description="d"))
    expect(changed.status_code == 200, f"patch: {changed.status_code} {changed.content!r}")
    expect(changed.parsed.description == "d" and changed.parsed.price == "12.50",
           f"patch changed more than it named: {changed.parsed}")
    priced = patch.sync_detailed(id=product_id, client=client,
                                 body=models.ProductPatchRequest(price=3))
    expect(priced.status_code == 200 and priced.parsed.price == "3.00",
           f"a numeric price: {priced.status_code} {priced.content!r}")
    page = list_.sync_detailed(client=client, brand="Generated", limit=1)
    expect(page.status_code == 200 and len(page.parsed.items) == 1 and page.parsed.next_,
           f"list: {page.status_code} {page.content!r}")
    expect(page.parsed.next_.startswith(base_url), f"next is not absolute: {page.parsed.next_}")
    missing = get.sync_detailed(id=999_999, client=client)
    expect(missing.status_code == 404 and missing.parsed.status == 404,
           f"a 404 read as a problem: {missing.status_code} {missing.content!r}")
    gone = delete.sync_detailed(id=product_id, client=client)
    expect(gone.status_code == 204, f"delete: {gone.status_code}")
    batch = importlib.import_module(f"{api.__name__}.upsert_batch")
    applied = batch.sync_detailed(client=client, body=[
        models.ProductRequest(brand="Generated", serial="3", manufacturer="M", name="A"),
        models.ProductRequest(brand="Generated", serial="3", manufacturer="M", name="B")])
    expect(applied.status_code == 200 and [r.outcome for r in applied.parsed] ==
           [models.BatchOutcome.CREATED, models.BatchOutcome.UPDATED] and
           applied.parsed[1].product.name == "B",
           f"batch: {applied.status_code} {applied.content!r}")
    refused = batch.sync_detailed(client=client, body=[
        models.ProductRequest(brand="Generated", serial="4", manufacturer="M", name="A"),
        models.ProductRequest(brand="Generated", serial="5", manufacturer="M", name="A",
                              price="-1")])
    expect(refused.status_code == 400 and refused.parsed.invalid_items == [1] and
           "1.price" in refused.parsed.errors.additional_properties,
           f"a bad batch read as a problem: {refused.status_code} {refused.content!r}")
    print(f"check-generated-client: PASS: models {', '.join(names)}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    try:
        main(sys.argv[1], sys.argv[2])
    except Failure as failure:
        sys.exit(f"check-generated-client: FAIL {failure}")
