-- The fenced operations of dlock's Fencer, one script for the three calls
-- so that the restart guard and the counter rules live in one place.
--
-- KEYS[1] the lock key; KEYS[2] its fencing counter (no TTL, never
-- decreases); KEYS[3] its waiters (a hash: waiter -> "waited:at:expires",
-- microseconds); KEYS[4] the node's restart marker (a hash: since, floor),
-- or absent where the node keeps none.
-- ARGV[1] the operation: "acquire", "extend" or "fence"
-- ARGV[2] the holder's value; ARGV[3] the TTL in milliseconds
-- ARGV[4] the restart guard in microseconds, "0" when off
-- ARGV[5] acquire: "1" to advance the counter; extend, fence: the token
--         ("0" for an unfenced extend)
-- ARGV[6] acquire: the waiter ("" for none); ARGV[7] how long it waited,
--         ARGV[8] how long to remember it, ARGV[9] the slack, in microseconds
-- Returns {ok, counter, guarded}.
local op, value, ttl, guard, arg = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local waiter = ARGV[6] or ""

-- counter returns the key's counter as a number, or nil.
local function counter()
	local c = redis.call("GET", KEYS[2])
	return c and tonumber(c)
end

local v = redis.pcall("GET", KEYS[1])
if type(v) == "table" then
	return {0, 0, 0} -- not a string (WRONGTYPE): not ours
end

if op == "fence" then
	if v ~= value then
		return {0, counter() or 0, 0}
	end
	local c = counter()
	if not c or c < tonumber(arg) then
		redis.call("SET", KEYS[2], arg)
		c = tonumber(arg)
	end
	return {c == tonumber(arg) and 1 or 0, c, 0}
end

if op == "extend" and v == value then
	redis.call("PEXPIRE", KEYS[1], ttl)
	return {1, counter() or 0, 0}
end
-- waitersAhead forgets waiters whose time is up, and reports whether
-- another waiter has waited longer than this one by more than the slack.
local function waitersAhead(now, waited, slack)
	local all = redis.call("HGETALL", KEYS[3])
	local ahead = false
	for i = 1, #all, 2 do
		local w, at, exp = string.match(all[i + 1], "^(%d+):(%d+):(%d+)$")
		if not w or tonumber(exp) <= now then
			redis.call("HDEL", KEYS[3], all[i])
		elseif all[i] ~= waiter and tonumber(w) + (now - tonumber(at)) > waited + slack then
			ahead = true
		end
	end
	return ahead
end

if op == "acquire" and waiter ~= "" and (v or redis.call("EXISTS", KEYS[3]) == 1) then
	-- Someone holds the key, or waits for it: queue. (A free key nobody
	-- waits for is granted below without further ado.)
	local t = redis.call("TIME")
	local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
	local waited, keep = tonumber(ARGV[7]), tonumber(ARGV[8])
	if v or waitersAhead(now, waited, tonumber(ARGV[9])) then
		redis.call("HSET", KEYS[3], waiter, string.format("%d:%d:%d", waited, now, now + keep))
		local ms = math.ceil(keep / 1000)
		if redis.call("PTTL", KEYS[3]) < ms then
			redis.call("PEXPIRE", KEYS[3], ms)
		end
		return {0, counter() or 0, 0}
	end
	redis.call("HDEL", KEYS[3], waiter)
end

if v then
	return {0, counter() or 0, 0} -- held by another value
end

-- A grant (acquire, or an extend that puts back a missing key): the
-- restart guard applies, and a missing counter starts at the floor.
local floor = "0"
if KEYS[4] then
	local m = redis.call("HMGET", KEYS[4], "since", "floor")
	if m[1] then
		floor = m[2]
		if guard > 0 then
			local t = redis.call("TIME")
			if tonumber(t[1]) * 1000000 + tonumber(t[2]) - tonumber(m[1]) < guard then
				return {0, counter() or 0, 1}
			end
		end
	elseif guard > 0 then
		-- No marker: the node lost its data, or is new. Note when it came
		-- back, and refuse until the guard has passed.
		local t = redis.call("TIME")
		local now = t[1] .. string.format("%06d", tonumber(t[2]))
		redis.call("HSET", KEYS[4], "since", now, "floor", now)
		return {0, counter() or 0, 1}
	end
end

if op == "extend" then
	if arg ~= "0" then
		local c = counter() or tonumber(floor)
		if c > tonumber(arg) then
			return {0, c, 0} -- a later holder was here
		end
		redis.call("SET", KEYS[2], arg)
	end
	redis.call("SET", KEYS[1], value, "PX", ttl)
	return {1, counter() or 0, 0}
end

redis.call("SET", KEYS[1], value, "PX", ttl)
if arg ~= "1" then
	return {1, counter() or 0, 0}
end
if redis.call("EXISTS", KEYS[2]) == 0 then
	redis.call("SET", KEYS[2], floor)
end
return {1, redis.call("INCR", KEYS[2]), 0}
