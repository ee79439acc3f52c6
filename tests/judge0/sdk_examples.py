"""The Judge0 Python SDK's documented examples (judge0 0.0.8, README),
run against our server's Judge0-compatible API and checked.

Unchanged except: every call gets `client=client` (our loopback server),
and the examples that leave `language` to the SDK's default (Python for
ML, an Extra CE language) name `language=judge0.PYTHON`. At the end, two
examples run verbatim with the implicit client the SDK makes from the
environment. Run by
tests/judge0.rs with JUDGE0_CE_ENDPOINT and JUDGE0_CE_AUTH_HEADERS set to
the test server; nothing may reach a public Judge0 service, so the SDK's
fall-backs to one are disabled before any example runs.
"""

import json
import os
import sys
from urllib.parse import urlparse

import judge0
import judge0.api

endpoint = os.environ["JUDGE0_CE_ENDPOINT"]
host = urlparse(endpoint).hostname
assert host in ("127.0.0.1", "localhost", "::1"), f"not a loopback endpoint: {endpoint}"


def _refuse(*_args, **_kwargs):
    raise RuntimeError("the SDK tried to fall back to a public Judge0 client")


# Belt and braces: the implicit clients other than the env's custom one.
judge0._get_preview_client = _refuse
judge0._get_hub_client = _refuse

client = judge0.Client(endpoint, json.loads(os.environ["JUDGE0_CE_AUTH_HEADERS"]))
assert client.version == "1.13.1", client.version
ACCEPTED = judge0.Status.ACCEPTED
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)


# "hello, world"
result = judge0.run(client=client, source_code="print('hello, world')", language=judge0.PYTHON)
print(result.stdout)
check(result.stdout == "hello, world\n", f"hello: {result.stdout!r}")
check(result.status == ACCEPTED, f"hello status: {result.status}")
check(result.time is not None and result.memory is not None, "time and memory")
check(result.created_at is not None and result.finished_at is not None, "dates")

# "Running C Programming Language"
source_code = """
#include <stdio.h>

int main() {
    printf("hello, world\\n");
    return 0;
}
"""

result = judge0.run(client=client, source_code=source_code, language=judge0.C)
print(result.stdout)
check(result.stdout == "hello, world\n", f"C hello: {result.stdout!r}")

# "Reading From Standard Input"
source_code = """
#include <stdio.h>

int main() {
    int a, b;
    scanf("%d %d", &a, &b);
    printf("%d\\n", a + b);

    char name[10];
    scanf("%s", name);
    printf("Hello, %s!\\n", name);

    return 0;
}
"""

stdin = """
3 5
Bob
"""

result = judge0.run(client=client, source_code=source_code, stdin=stdin, language=judge0.C)
print(result.stdout)
check(result.stdout == "8\nHello, Bob!\n", f"stdin: {result.stdout!r}")

# "Test Cases"
results = judge0.run(
    client=client,
    source_code="print(f'Hello, {input()}!')",
    language=judge0.PYTHON,
    test_cases=[
        ("Bob", "Hello, Bob!"), # Test Case #1. Tuple with first value as standard input, second value as expected output.
        { # Test Case #2. Dictionary with "input" and "expected_output" keys.
            "input": "Alice",
            "expected_output": "Hello, Alice!"
        },
        ["Charlie", "Hello, Charlie!"], # Test Case #3. List with first value as standard input and second value as expected output.
    ],
)

for i, result in enumerate(results):
    print(f"--- Test Case #{i + 1} ---")
    print(result.stdout)
    print(result.status)
check(len(results) == 3, "three test cases")
check(all(r.status == ACCEPTED for r in results), [r.status for r in results])

# "Test Cases And Multiple Languages" (a batch: 6 submissions)
submissions = [
    judge0.Submission(
        source_code="print(f'Hello, {input()}!')",
        language=judge0.PYTHON,
    ),
    judge0.Submission(
        source_code="""
#include <stdio.h>

int main() {
    char name[10];
    scanf("%s", name);
    printf("Hello, %s!\\n", name);
    return 0;
}
""",
        language=judge0.C,
    ),
]

test_cases=[
    ("Bob", "Hello, Bob!"),
    ("Alice", "Hello, Alice!"),
    ("Charlie", "Hello, Charlie!"),
]

results = judge0.run(client=client, submissions=submissions, test_cases=test_cases)

for i in range(len(submissions)):
    print(f"--- Submission #{i + 1} ---")

    for j in range(len(test_cases)):
        result = results[i * len(test_cases) + j]

        print(f"--- Test Case #{j + 1} ---")
        print(result.stdout)
        print(result.status)
check(len(results) == 6, "six results")
check(all(r.status == ACCEPTED for r in results), [r.status for r in results])
check(results[5].stdout == "Hello, Charlie!\n", repr(results[5].stdout))

# A wrong answer is reported as such.
results = judge0.run(
    client=client,
    source_code="print('nope')",
    language=judge0.PYTHON,
    test_cases=[("", "yes")],
)
check(results[0].status == judge0.Status.WRONG_ANSWER, f"WA: {results[0].status}")

# "Asynchronous Execution"
submission = judge0.async_run(client=client, source_code="print('hello, world')", language=judge0.PYTHON)
print(submission.stdout) # Prints 'None'
check(submission.stdout is None and submission.token is not None, "async: token, no output yet")

judge0.wait(client=client, submissions=submission) # Wait for the submission to finish.

print(submission.stdout) # Prints 'hello, world'
check(submission.stdout == "hello, world\n", f"async: {submission.stdout!r}")

# "Get Languages"
print(client.get_languages())
check(any(lang.id == 71 for lang in client.get_languages()), "languages list Python")
check(client.get_language(50).source_file == "main.c", "language 50")

# The same examples with the implicit client, exactly as documented: the
# SDK builds it from JUDGE0_CE_ENDPOINT and JUDGE0_CE_AUTH_HEADERS.
import judge0
result = judge0.run(source_code="print('hello, world')", language=judge0.PYTHON)
print(result.stdout)
check(result.stdout == "hello, world\n", f"implicit hello: {result.stdout!r}")

import judge0
client = judge0.get_client()
print(client.get_languages())
check(client.endpoint == endpoint, f"implicit client endpoint: {client.endpoint}")

print(f"sdk examples: {checks} checks passed")
