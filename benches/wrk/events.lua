-- wrk script: one page view a request, POST /v1/events with a text/plain body (what
-- navigator.sendBeacon sends), over 10,000 articles, with a desktop browser's
-- User-Agent so the bot filter counts it.
local articles = 10000
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/plain"
wrk.headers["User-Agent"] =
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

request = function()
  local body = string.format('{"type":"view","article":"a%d","section":"news","lang":"en"}',
    math.random(0, articles - 1))
  return wrk.format(nil, "/v1/events", nil, body)
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT req_s=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout))
end
