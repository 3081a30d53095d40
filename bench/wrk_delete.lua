-- bench/wrk_delete.lua: wrk script for bench/run's capacity runs.
-- DELETE /api/atlas/v2/groups/$BENCH_GROUP/users/<id>, rotating over the
-- ids in the file $BENCH_IDS (one per line), so that the server sees the
-- same route and work as from the clients.  Each wrk thread starts at a
-- different offset, so threads do not ask for the same users at once.
local ids = {}
local group = os.getenv("BENCH_GROUP")
for line in io.lines(os.getenv("BENCH_IDS")) do
  if #line > 0 then ids[#ids + 1] = line end
end
local counter = 0
local offset = 0
local nthreads = 0

setup = function(thread)
  thread:set("offset", nthreads * 7919)
  nthreads = nthreads + 1
end

request = function()
  counter = counter + 1
  local id = ids[((offset + counter) % #ids) + 1]
  return wrk.format("DELETE", "/api/atlas/v2/groups/" .. group .. "/users/" .. id)
end
