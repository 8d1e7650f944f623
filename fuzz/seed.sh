#!/usr/bin/env bash
# Seeds the fuzz corpus with the real GitHub payloads in ../shared/github-webhooks: each file
# once per event name, prefixed with the selector byte the target maps to that event.
set -euo pipefail
cd "$(dirname "$0")"
out=corpus/parse_and_map
mkdir -p "$out"
events=$(python3 - <<'PY'
import re
src = open("../services/ingest/src/mapping.rs").read()
def names(const):
    block = re.search(const + r": &\[&str\] = &\[(.*?)\];", src, re.S).group(1)
    return re.findall(r'"([a-z_]+)"', block)
print(" ".join(names("REPOSITORY_EVENTS") + names("OTHER_KNOWN_EVENTS") + ["star"]))
PY
)
i=0
for e in $events; do
  dir=../../shared/github-webhooks/api.github.com/$e
  if [ -d "$dir" ]; then
    for f in "$dir"/*.json; do
      { printf "\\$(printf '%03o' "$i")"; cat "$f"; } > "$out/$e-$(basename "$f")"
    done
  fi
  i=$((i + 1))
done
echo "seeded $(ls "$out" | wc -l) inputs into fuzz/$out"
