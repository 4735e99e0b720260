#!/usr/bin/env bash
# Runs Mercure's own conformance suite (conformance-tests/ of github.com/dunglas/mercure, which
# stays outside this project: pass the path of a checkout) against the release binary, in
# Debian's Chromium, with custom ids on. Needs `make release` and `make setup` first.
#   tools/mercure-conformance.sh /path/to/mercure/conformance-tests
set -euo pipefail
suite=${1:?usage: $0 /path/to/mercure/conformance-tests}
root=$(cd "$(dirname "$0")/.." && pwd)
port=${PORT:-3290}
secret='!ChangeThisMercureHubJWTSecretKey!'   # the key the suite's token is signed with
work=$(mktemp -d)
cp "$suite"/mercure.spec.ts "$work"/
cp -a "$root"/end2end/node_modules "$work"/node_modules
(cd "$work" && npm install --no-save --no-audit --no-fund --prefix . dotenv@17 >/dev/null \
   && cp -a "$root"/end2end/node_modules/. node_modules/)
cat > "$work"/playwright.config.ts <<CONFIG
export default {
  testDir: ".", timeout: 10_000, workers: 1, reporter: "list",
  use: { baseURL: "http://127.0.0.1:$port/.well-known/mercure",
         launchOptions: { executablePath: "/usr/bin/chromium", args: ["--disable-gpu", "--no-first-run"] } },
};
CONFIG
MERCURE_PUBLISHER_JWT_KEY=$secret MERCURE_EXTRA_DIRECTIVES=anonymous \
  "$root"/target/release/tidings --addr 127.0.0.1:"$port" --tick-interval 0 >"$work"/hub.log 2>&1 &
hub=$!
trap 'kill "$hub" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
cd "$work" && CUSTOM_ID=1 PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 node node_modules/@playwright/test/cli.js test
