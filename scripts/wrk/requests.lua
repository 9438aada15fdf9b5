-- Requests from a file, in turn: each line is a path (a GET; "POST /path" for a POST),
-- then optionally a tab and one header ("Authorization: Bearer …" or "Cookie: …"), and
-- for a POST another tab and its JSON body, so that many users' requests, not one user's,
-- are measured. The file is WRK_REQUESTS (written by scripts/seed_reads.py). wrk counts
-- answers other than 2xx and 3xx itself ("Non-2xx or 3xx responses").
local requests = {}

function init(args)
  local file = os.getenv("WRK_REQUESTS") or error("WRK_REQUESTS is not set")
  for line in io.lines(file) do
    local target, header, body = line:match("^([^\t]+)\t?([^\t]*)\t?(.*)$")
    local method, path = target:match("^(POST) (.+)$")
    local headers = {}
    local name, value = header:match("^([^:]+):%s*(.*)$")
    if name then headers[name] = value end
    if method then
      headers["Content-Type"] = "application/json"
      requests[#requests + 1] = wrk.format(method, path, headers, body)
    else
      requests[#requests + 1] = wrk.format("GET", target, headers)
    end
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
