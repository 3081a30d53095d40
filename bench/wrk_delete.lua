-- bench/wrk_delete.lua: wrk script for bench/run's capacity runs.
-- DELETE /api/atlas/v2/groups/$BENCH_GROUP/users/<id>, rotating over the
-- ids in the file $BENCH_IDS (one per line), so that the server sees the
-- same route and work as from the clients.  Each of the $BENCH_THREADS wrk
-- threads starts in its own share of the ids, so that no two threads remove
-- the same user (a second DELETE would only get a 404).
local ids = {}
local group = os.getenv("BENCH_GROUP")
for line in io.lines(os.getenv("BENCH_IDS")) do
  if #line > 0 then ids[#ids + 1] = line end
end
local counter = 0
local nthreads = 0
offset = 0  -- a global: thread:set() below sets it in each thread

setup = function(thread)
  thread:set("offset", nthreads * math.floor(#ids / (tonumber(os.getenv("BENCH_THREADS")) or 1)))
  nthreads = nthreads + 1
end

request = function()
  counter = counter + 1
  local id = ids[((offset + counter) % #ids) + 1]
  return wrk.format("DELETE", "/api/atlas/v2/groups/" .. group .. "/users/" .. id)
end
