-- wrk script for a forward proxy: wrk connects to the proxy given on its
-- command line and sends every request in absolute form, as an HTTP client
-- configured with a proxy does:
--   TARGET=http://127.0.0.1:ORIGIN_PORT/100b wrk -s absolute.lua http://PROXY_HOST:PROXY_PORT/
-- TARGET must be an http:// URL with an explicit port.
local target = os.getenv("TARGET")
if not target then
   error("absolute.lua: set TARGET=http://host:port/path")
end
local authority = target:match("^http://([^/]+)")
if not authority then
   error("absolute.lua: TARGET must look like http://host:port/path, got " .. target)
end

wrk.method = "GET"
wrk.path = target
wrk.headers["Host"] = authority
