-- Delete KEYS[1] only if it holds ARGV[1] (this holder's value).
-- Returns 1 when deleted, 0 when the key is absent, held by another value,
-- or not a string (a key of another type is not ours).
if redis.pcall("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0
