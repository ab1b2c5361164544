#!/usr/bin/env python3
"""Every failing request of a schemathesis run, grouped by check, operation and cause.

Schemathesis prints one example per kind of failure and operation; this reads its NDJSON report
(`--report ndjson`) and lists each distinct cause: for a valid request the server rejected, each
field and message of the problem+json `errors` (unknown members as one cause); otherwise the
check's own words. Each group shows how often it happened, in which phases, and its shortest
request with the answer.

usage: python3 ops/schemathesis-causes.py target/schemathesis-report/events.ndjson
"""
import base64
import collections
import json
import sys

BODY_CHARS = 300


def decoded(body):
    """A recorded body as text (the report keeps bodies base64-encoded)."""
    if isinstance(body, dict) and "$base64" in body:
        return base64.b64decode(body["$base64"]).decode("utf-8", "replace")
    return body


def causes(check, failure, response):
    """The causes one failing check stands for."""
    if check == "positive_data_acceptance" and response and response["status_code"] == 400:
        try:
            errors = json.loads(decoded(response.get("content")) or "{}").get("errors") or {}
        except (ValueError, AttributeError):
            errors = {}
        found = {"<unknown member>: unknown field" if m.startswith("unknown field") else f"{f}: {m}"
                 for f, messages in errors.items() for m in messages}
        if found:
            return sorted(found)
    status = response["status_code"] if response else "no answer"
    message = failure["message"]
    if "Invalid component:" in message:
        detail = " ".join(message.split("Invalid component:", 1)[1].split())
    else:
        detail = message.split("\n", 1)[0]
    return [f"answered {status}: {detail}"]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    groups = collections.defaultdict(list)
    for line in open(sys.argv[1], encoding="utf-8"):
        event = json.loads(line).get("ScenarioFinished")
        if not event:
            continue
        recorder = event["recorder"]
        for case_id, checks in recorder.get("checks", {}).items():
            interaction = recorder.get("interactions", {}).get(case_id) or {}
            for check in checks:
                if check["status"] != "failure":
                    continue
                failure = check["failure_info"]["failure"]
                response = interaction.get("response")
                for cause in causes(check["name"], failure, response):
                    groups[(check["name"], failure["operation"], cause)].append(
                        (event["phase"], interaction.get("request"), response))
    print(f"== {len(groups)} distinct failure causes (check | operation | cause)")
    for (check, operation, cause), found in sorted(groups.items()):
        phases = ", ".join(sorted({phase for phase, _, _ in found}))
        print(f"-- {check} | {operation} | {cause}   ({len(found)}x; {phases})")
        examples = sorted((f for f in found if f[1]), key=lambda f: len(json.dumps(f[1])))
        if examples:
            _, request, response = examples[0]
            body = decoded(request.get("body"))
            headers = {k: v[0] for k, v in request.get("headers", {}).items()
                       if k.lower() in ("content-type", "accept")}
            print(f"   {request['method']} {request['uri']}"
                  + (f" {headers}" if headers else "") + (f" {body[:BODY_CHARS]}" if body else ""))
            if response:
                text = decoded(response.get("content")) or ""
                print(f"   -> {response['status_code']} {text[:BODY_CHARS]}")


if __name__ == "__main__":
    main()
