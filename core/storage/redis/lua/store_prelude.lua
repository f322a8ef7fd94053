-- Shared by every store script. KEYS: the session's parts, then the global parts (see store.py);
-- ARGV[1] the session id, ARGV[2] the TTL in seconds. SHA_CHARS, NAME_KEY_CHARS and LIST_CHUNK
-- are defined above this by store.py, from its constants.
local SID, TTL = ARGV[1], tonumber(ARGV[2])
local META, ORDER, REC, NAMES = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local SHAS, BLOBS, CACHE, ANN = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local HELD, COUNT, TOTAL, IMAGES, SEEN = KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13]

local function num(v) return tonumber(v or '0') or 0 end

local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function account(bytes, images)
  if bytes ~= 0 then redis.call('HINCRBY', HELD, SID, bytes); redis.call('INCRBY', TOTAL, bytes) end
  if images ~= 0 then redis.call('HINCRBY', COUNT, SID, images); redis.call('INCRBY', IMAGES, images) end
end

-- remove the session's keys and its share of the totals; returns how many images it had
local function drop()
  local held, count = num(redis.call('HGET', HELD, SID)), num(redis.call('HGET', COUNT, SID))
  redis.call('DEL', META, ORDER, REC, NAMES, SHAS, BLOBS, CACHE, ANN)
  redis.call('HDEL', HELD, SID)
  redis.call('HDEL', COUNT, SID)
  if held ~= 0 then redis.call('DECRBY', TOTAL, held) end
  if count ~= 0 then redis.call('DECRBY', IMAGES, count) end
  return count
end

-- the keys went with their TTL while the accounting stayed: settle it before counting on it
local function settle()
  if redis.call('EXISTS', META) == 0 and redis.call('HEXISTS', HELD, SID) == 1 then drop() end
end

local function keep()
  redis.call('HSET', META, 'alive', '1')
  redis.call('ZADD', SEEN, now(), SID)
  for i = 1, 8 do redis.call('EXPIRE', KEYS[i], TTL) end
end

-- nil when nbytes more fit in the quota and the cap, else the refusal
local function room(nbytes, quota, cap)
  local held = num(redis.call('HGET', HELD, SID))
  if held + nbytes > quota then return {'quota', tostring(held), tostring(nbytes)} end
  if num(redis.call('GET', TOTAL)) + nbytes > cap then return {'cap'} end
  return nil
end

local function release_cache(image_id)
  local names = redis.call('HGET', CACHE, 'i:' .. image_id)
  if not names then return 0 end
  local freed = 0
  for _, name in ipairs(cjson.decode(names)) do
    freed = freed + num(redis.call('HGET', CACHE, 'n:' .. image_id .. ':' .. name))
    redis.call('HDEL', CACHE, 'v:' .. image_id .. ':' .. name, 'n:' .. image_id .. ':' .. name)
  end
  redis.call('HDEL', CACHE, 'i:' .. image_id)
  return freed
end
