// Load for bench/api_load.py (its configuration as JSON on stdin): `connections` concurrent keep-alive connections send `amount` GET requests in
// all, cycling through `paths`; prints one JSON line with the latency percentiles (ms) autocannon measured.
// A compiled-speed client: Python client threads share one interpreter lock and would time themselves.
"use strict";
const autocannon = require("autocannon");

const config = JSON.parse(require("fs").readFileSync(0, "utf8")); // from stdin: a URL per request can be long
autocannon(
  {
    url: config.url,
    connections: config.connections,
    amount: config.amount,
    headers: config.headers,
    requests: config.paths.map((path) => ({ method: "GET", path })),
  },
  (error, result) => {
    if (error) {
      console.error(String(error));
      process.exit(1);
    }
    const l = result.latency;
    console.log(JSON.stringify({ p50: l.p50, p99: l.p99, max: l.max, requests: result.requests.total, non2xx: result.non2xx, errors: result.errors + result.timeouts, seconds: result.duration }));
  },
);
