-- Make KEYS[1] hold ARGV[1] (this holder's value) for ARGV[2] milliseconds:
-- reset its time to live where it holds the value, set it where it is
-- absent (the node lost it), refuse where it holds anything else.
-- Returns 1 when the key holds the value afterwards, 0 otherwise.
local v = redis.pcall("GET", KEYS[1])
if type(v) == "table" then
	return 0 -- not a string (WRONGTYPE): not ours
end
if v == ARGV[1] then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
if v then
	return 0
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return 1
