-- bench/pipeline.lua: HTTP/1.1 pipelining for wrk. Each connection sends `depth` requests
-- (default 16; wrk ... URL -- DEPTH) back to back and waits for all the answers before the
-- next batch; wrk counts and times every answer, so requests/s is responses/s.
init = function(args)
   local depth = tonumber(args[1]) or 16
   local batch = {}
   for i = 1, depth do
      batch[i] = wrk.format()
   end
   req = table.concat(batch)
end

request = function()
   return req
end
