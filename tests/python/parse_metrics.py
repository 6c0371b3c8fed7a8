"""Parses a Prometheus text exposition (the file named by the first argument, or
stdin) with prometheus_client's own parser
and prints every sample, one a line, tab-separated:

    family  type  sample_name  labels  value

labels as k=v pairs sorted by key and joined with commas (empty when none). Exits
non-zero, with the parser's error, if the text does not parse. Used by
tests/tests/admin.rs.
"""

import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    if len(sys.argv) > 1:
        with open(sys.argv[1], encoding="utf-8") as f:
            text = f.read()
    else:
        text = sys.stdin.read()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            print(f"{family.name}\t{family.type}\t{sample.name}\t{labels}\t{sample.value!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
