-- Delete KEYS[1] only if it holds ARGV[1] (this holder's value), and
-- announce the release on the channel ARGV[2] with the key as the message,
-- so that clients waiting for the key retry at once.
-- Returns 1 when deleted, 0 when the key is absent, held by another value,
-- or not a string.
if redis.pcall("GET", KEYS[1]) == ARGV[1] then
	redis.call("DEL", KEYS[1])
	redis.call("PUBLISH", ARGV[2], KEYS[1])
	return 1
end
return 0
