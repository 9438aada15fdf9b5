-- Requests from a file, in turn: each line is a path, then optionally a tab and one
-- header ("Authorization: Bearer …" or "Cookie: …"), so that many users' requests, not
-- one user's, are measured. The file is WRK_REQUESTS (written by scripts/seed_reads.py).
-- wrk counts answers other than 2xx and 3xx itself ("Non-2xx or 3xx responses").
local requests = {}

function init(args)
  local file = os.getenv("WRK_REQUESTS") or error("WRK_REQUESTS is not set")
  for line in io.lines(file) do
    local path, header = line:match("^([^\t]+)\t?(.*)$")
    local headers = {}
    local name, value = header:match("^([^:]+):%s*(.*)$")
    if name then headers[name] = value end
    requests[#requests + 1] = wrk.format("GET", path, headers)
  end
  -- Each thread starts at a different place in the list.
  next_request = ((id or 0) * 7919) % #requests
end

-- Runs once per thread before init, in the main state: numbers the threads (the global
-- `id` in each thread's own state).
function setup(thread)
  thread_count = (thread_count or 0) + 1
  thread:set("id", thread_count)
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end
