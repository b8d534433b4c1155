"""Redis backplane: the Lua scripts of Durable Streams (``hub.backplane.streams``): create, state,
append, delete.

A stream's state is a hash beside its channel's keys, ``P ds:<channel>``: ``ct`` (the content
type as created) and ``mt`` (its media type, as appends are compared), ``ttl`` and ``exp`` when
given, ``seen`` (ms of the last touch: a sliding TTL runs from it), ``start`` (the creation
position), ``tail`` (the newest event position seen, so it never goes back when events expire),
``at`` (created at, seconds), ``closed`` and ``closer`` (the producer tuple that closed it),
``sseq`` (the last Stream-Seq), ``p:<producer id>`` (its ``"<epoch> <seq> <tick>"``), ``np``
(how many) and ``pt`` (the last tick: appends by a producer counted). Past ``MAX_PRODUCERS``
the least recently seen (the lowest ticks) are forgotten, down to nine tenths of it, so the one
scan of the hash it takes is paid once per thousand new producers, not by each. Each check
happens in the script that stores, so it is atomic with the channel's events on every process:
its events are stored by ``store`` and its close and deletion marked by ``close_channel`` and
``delete_channel`` (``redis_lua``), the very code of a native publish, close and delete, so
every reader meets them in position order.

Expiry: a stream with a TTL or an expiry time is expired lazily, by the first script that
loads it after its end, and deleted then as by ``delete_stream`` (marker, tombstone, listeners
told). Redis drops the hash by itself only ``history_ttl`` after that end (when nobody looked:
its events are gone by then too). A stream with neither lives until it is deleted, and so does
its close (the tombstone ``c<position>`` expires with the hash, or never), while its events
expire with the channel's history. The ``tail`` stays.

Every script takes the keys of ``Keys.of_channel`` (seq, origin, the channel's stream, trim
marker, tombstone, the notify stream and its marker, the state) and, when it writes, an
operation key last: its reply is kept there a while, so a retry of the library after a timeout
gets the first reply instead of acting twice (as the publish script's idempotency key does).
ARGV always starts with: history ttl ms, history size, notify length, channel, op key ttl ms.
"""

from __future__ import annotations

from hub.backplane.redis_lua import MARKS, NOTIFY, STORE
from hub.backplane.streams import MAX_PRODUCERS

__all__ = ["APPEND", "CREATE", "DELETE_STREAM", "STATE"]

# Returns (through ``finish``, which notifies the readers of what the script wrote, and keeps
# the reply under the operation key): the reply built by the script; ``flags`` in it tells the
# caller what to note locally (``redis_streams``): 1 deleted (an expired stream, or the
# deletion asked for), 2 revived (the name taken again after a deletion or a close), 4 closed.
# ``load`` answers the stream's fields, or nil when there is none (or it expired: deleted now).
# ``state`` is a reply's stream part: {ct, ttl, exp, closed, tail, created at, start}.
# ``keep`` sets the hash's own expiry (and its close's tombstone's): history_ttl past the
# stream's end, or none. ``above`` compares Stream-Seqs byte by byte (Lua's < follows the
# server's locale).
_COMMON = (
    NOTIFY
    + STORE
    + MARKS
    + """
local clock = redis.call('TIME')
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local now_ms = math.floor(now_us / 1000)
local now_text = string.format('%.0f', now_ms)
local ttl_ms = tonumber(ARGV[1])
local newest, flags = nil, 0
local function finish(reply)
  if newest then notify(KEYS[6], KEYS[7], ARGV[3], ttl_ms, newest, {ARGV[4]}) end
  if KEYS[9] then redis.call('SET', KEYS[9], cjson.encode(reply), 'PX', ARGV[5]) end
  return reply
end
local FIELDS = {'ct', 'mt', 'ttl', 'exp', 'seen', 'start', 'tail', 'at', 'closed', 'closer',
                'sseq'}
local function load()
  local got = redis.call('HMGET', KEYS[8], unpack(FIELDS))
  if not got[1] then return nil end
  local s = {}
  for i, name in ipairs(FIELDS) do s[name] = got[i] end
  local ttl, exp = tonumber(s.ttl), tonumber(s.exp)
  if (exp and now_us >= exp * 1000000) or (ttl and now_ms >= tonumber(s.seen) + ttl * 1000) then
    newest = delete_channel(now_us, ttl_ms)
    flags = 1
    return nil
  end
  local gone = redis.call('GET', KEYS[5])
  s.closed = s.closed == '1' or (gone and string.sub(gone, 1, 1) == 'c') or false
  return s
end
local function tail(s)
  local at = math.max(tonumber(s.start), tonumber(s.tail) or 0)
  for _, entry in ipairs(redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 2)) do
    if entry[2][1] ~= 'z' then  -- an event, or the revival's marker at the start
      local last = position(entry[1])
      if last > at then
        at = last
        redis.call('HSET', KEYS[8], 'tail', string.format('%.0f', at))
      end
      break
    end
  end
  return string.format('%.0f', at)
end
local function state(s)
  return {s.ct, s.ttl or '', s.exp or '', s.closed and 1 or 0, tail(s), s.at, s.start}
end
local function keep(s)
  local ttl, exp = tonumber(s.ttl), tonumber(s.exp)
  local ends = nil
  if exp then ends = math.floor(exp * 1000) + ttl_ms end
  if ttl then
    local slides = tonumber(s.seen) + ttl * 1000 + ttl_ms
    ends = ends and math.min(ends, slides) or slides
  end
  local keys = {KEYS[8]}
  local gone = redis.call('GET', KEYS[5])
  if gone and string.sub(gone, 1, 1) == 'c' then keys[2] = KEYS[5] end
  for _, key in ipairs(keys) do
    if ends then
      redis.call('PEXPIREAT', key, string.format('%.0f', ends))
    else
      redis.call('PERSIST', key)
    end
  end
end
local function above(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end
local function append_drafts(first)
  local ids = {}
  for i = first, #ARGV do
    local at = take(KEYS[1], KEYS[2], now_us)
    store(KEYS[3], KEYS[4], ARGV[i], tonumber(at), now_us, now_text, tonumber(ARGV[2]), ttl_ms)
    ids[#ids + 1] = at
    newest = at
  end
  if #ids > 0 then redis.call('HSET', KEYS[8], 'tail', ids[#ids]) end
  return ids
end
local seen = KEYS[9] and redis.call('GET', KEYS[9])
if seen then return cjson.decode(seen) end
"""
)

# ARGV 6..: content type, media type, ttl or '', expires at or '', closed (1/0), bodies...
# Returns {created 1/0, flags, state}: an existing stream is answered as it is. A deletion's
# tombstone or a native close is lifted (``revive_channel``): the stream starts at the
# revival's marker; otherwise at a position of its own (none is stored there: a reader of the
# channel has nothing to meet), after any native history of the channel.
CREATE = (
    _COMMON
    + """
local s = load()
if s then return finish({0, flags, state(s)}) end
local start
if redis.call('EXISTS', KEYS[5]) == 1 then
  start = revive_channel(now_us, ttl_ms)
  newest = start
  flags = flags + 2
else
  start = take(KEYS[1], KEYS[2], now_us)
end
local created = string.format('%.6f', now_us / 1000000)
redis.call('HSET', KEYS[8], 'ct', ARGV[6], 'mt', ARGV[7], 'seen', now_text, 'start', start,
           'tail', start, 'at', created)
if ARGV[8] ~= '' then redis.call('HSET', KEYS[8], 'ttl', ARGV[8]) end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[8], 'exp', ARGV[9]) end
s = {ct = ARGV[6], ttl = ARGV[8] ~= '' and ARGV[8] or nil, exp = ARGV[9] ~= '' and ARGV[9] or nil,
     seen = now_ms, start = start, at = created, closed = false}
keep(s)
local ids = append_drafts(11)
if #ids > 0 then s.tail = ids[#ids] end
if ARGV[10] == '1' then
  newest = close_channel(now_us, ttl_ms)
  s.closed = true
  flags = flags + 4
end
return finish({1, flags, state(s)})
"""
)

# ARGV 6: touch (1/0). Returns {found 1/0, flags, state}.
STATE = (
    _COMMON
    + """
local s = load()
if not s then return finish({0, flags, {}}) end
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[8], 'seen', now_text)
  s.seen = now_ms
  if s.ttl then keep(s) end
end
return finish({1, flags, state(s)})
"""
)

# ARGV 6..: '=' .. media type or '', '=' .. producer id or '', epoch, seq, '=' .. Stream-Seq or
# '', close (1/0), bodies...
# Returns {outcome, flags, state, ids joined by ',', number}: the number is the producer's
# current epoch (stale-epoch), the expected seq (gap) or its last seq (duplicate). The checks
# in the contract's order; nothing is written unless the outcome is "appended".
APPEND = (
    _COMMON
    + f"local MAX_PRODUCERS, KEEP_PRODUCERS = {MAX_PRODUCERS}, {MAX_PRODUCERS * 9 // 10}\n"
    + """
local function forget_producers()
  local all, seen = redis.call('HGETALL', KEYS[8]), {}
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'p:' then
      local tick = string.match(all[i + 1], '^%-?%d+ %-?%d+ (%d+)$')
      seen[#seen + 1] = {tonumber(tick) or 0, all[i]}
    end
  end
  table.sort(seen, function(a, b) return a[1] < b[1] end)
  for i = 1, #seen - KEEP_PRODUCERS do redis.call('HDEL', KEYS[8], seen[i][2]) end
  redis.call('HSET', KEYS[8], 'np', math.min(#seen, KEEP_PRODUCERS))
end
local s = load()
if not s then return finish({'missing', flags, {}, '', ''}) end
local producer = ARGV[7] ~= '' and string.sub(ARGV[7], 2) or nil
local function refuse(outcome, number) return finish({outcome, flags, state(s), '', number}) end
if s.closed then
  if producer and s.closer == producer .. '\\n' .. ARGV[8] .. '\\n' .. ARGV[9] then
    return refuse('duplicate', ARGV[9])
  end
  return refuse('closed', '')
end
if ARGV[6] ~= '' and string.sub(ARGV[6], 2) ~= s.mt then return refuse('mismatch', '') end
if producer then
  local epoch, seq = tonumber(ARGV[8]), tonumber(ARGV[9])
  local known = redis.call('HGET', KEYS[8], 'p:' .. producer)
  if not known then
    if seq ~= 0 then return refuse('gap', '0') end
  else
    local had_epoch, had_seq = string.match(known, '^(%-?%d+) (%-?%d+)')
    if epoch < tonumber(had_epoch) then return refuse('stale-epoch', had_epoch) end
    if epoch > tonumber(had_epoch) then
      if seq ~= 0 then return refuse('bad-seq', '') end
    elseif seq <= tonumber(had_seq) then
      return refuse('duplicate', had_seq)
    elseif seq > tonumber(had_seq) + 1 then
      return refuse('gap', string.format('%.0f', tonumber(had_seq) + 1))
    end
  end
end
local stream_seq = ARGV[10] ~= '' and string.sub(ARGV[10], 2) or nil
if stream_seq and s.sseq and not above(stream_seq, s.sseq) then
  return refuse('seq-regression', '')
end
local ids = append_drafts(12)
if #ids > 0 then s.tail = ids[#ids] end
if producer then
  local tick = redis.call('HINCRBY', KEYS[8], 'pt', 1)
  local seen = ARGV[8] .. ' ' .. ARGV[9] .. ' ' .. tick
  if redis.call('HSET', KEYS[8], 'p:' .. producer, seen) == 1
    and redis.call('HINCRBY', KEYS[8], 'np', 1) > MAX_PRODUCERS then
    forget_producers()
  end
end
if stream_seq then redis.call('HSET', KEYS[8], 'sseq', stream_seq) end
redis.call('HSET', KEYS[8], 'seen', now_text)
s.seen = now_ms
keep(s)
if ARGV[11] == '1' then
  if producer then
    redis.call('HSET', KEYS[8], 'closer', producer .. '\\n' .. ARGV[8] .. '\\n' .. ARGV[9])
  end
  newest = close_channel(now_us, ttl_ms)
  s.closed = true
  flags = flags + 4
end
return finish({'appended', flags, state(s), table.concat(ids, ','), ''})
"""
)

# Returns {deleted 1/0, flags}: 0 when there is no stream (or it had expired: deleted now).
DELETE_STREAM = (
    _COMMON
    + """
if not load() then return finish({0, flags}) end
newest = delete_channel(now_us, ttl_ms)
return finish({1, flags + 1})
"""
)
