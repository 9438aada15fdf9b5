-- A probe, not a flood: each connection waits 5 ms between requests (about 200 requests a
-- second per connection), as a load balancer's or a user's requests would arrive while
-- something else loads the server. wrk run flat out would measure wrk's own hold on the
-- CPU as much as the server's answer time.
function delay()
  return 5
end
