"""Redis backplane: the four Lua scripts of channels: publish, history, delete and close (built
on the functions of ``redis_lua``; a Durable Stream's are in ``redis_streams_lua``).

Each runs atomically inside Redis, which is what the backplane's guarantees rest on: a publish
takes its positions and stores its events in one step, a history page is read from one
snapshot of all its channels (see ``hub.backplane.redis``), and a deletion leaves its tombstone
and its marker entry in one step with the channel's events (``hub.backplane.redis_private``),
and a close likewise (its mark in the same tombstone key, valued ``c<position>``).
"""

from __future__ import annotations

from hub.backplane.redis_lua import MARKS, NOTIFY, STORE

__all__ = ["CLOSE", "DELETE", "HISTORY", "NOTIFY_LENGTH", "PUBLISH"]

#: Entries the notify stream keeps (about: trimmed a node at a time). A reader further behind
#: than this reads its channels' streams themselves once (``redis_reader``), so this bounds
#: Redis memory (~50 bytes an entry, at most ~1.1 KB), not correctness.
NOTIFY_LENGTH = 20_000

# KEYS: seq, origin, idempotency key, notify stream, notify trim marker, then (stream, trim
#       marker, tombstone) per event
# ARGV: maxlen, ttl ms, idempotency ttl ms, notify length, body per event..., channel per
#       event...
# Returns {0, positions joined by ','} for a new batch; {1, ids joined by ','} for a key seen
# before (its ids, "position:channel": the first batch's, whatever this one's body is); {2, n}
# when the n-th event's channel is deleted, {3, n} when it is closed (its tombstone key holds
# "c<position>": see CLOSE).
# Each event is stored by ``store`` (``redis_lua``: trimming, the trim marker).
PUBLISH = (
    NOTIFY
    + STORE
    + """
local seen = redis.call('GET', KEYS[3])
if seen then return {1, seen} end
for i = 8, #KEYS, 3 do  -- a deleted or closed channel refuses the whole batch, before any write
  local gone = redis.call('GET', KEYS[i])
  if gone then
    return {string.sub(gone, 1, 1) == 'c' and 3 or 2, tostring((i - 5) / 3)}
  end
end
local clock = redis.call('TIME')
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if last == 0 then redis.call('SET', KEYS[2], string.format('%.0f', now_us)) end
local maxlen = tonumber(ARGV[1])
local ttl_ms = tonumber(ARGV[2])
local now_ms = string.format('%.0f', math.floor(now_us / 1000))
local ids, named, channels = {}, {}, {}
local count = (#KEYS - 5) / 3
for i = 6, #KEYS, 3 do
  local at = math.max(last + 1, now_us)
  last = at
  local text = store(KEYS[i], KEYS[i + 1], ARGV[5 + (i - 6) / 3], at, now_us, now_ms, maxlen,
                     ttl_ms)
  ids[#ids + 1] = text
  channels[#channels + 1] = ARGV[4 + count + #ids]
  named[#named + 1] = text .. ':' .. channels[#channels]
end
redis.call('SET', KEYS[1], string.format('%.0f', last))
notify(KEYS[4], KEYS[5], ARGV[4], ttl_ms, string.format('%.0f', last), channels)
redis.call('SET', KEYS[3], table.concat(named, ','), 'PX', ARGV[3])
return {0, table.concat(ids, ',')}
"""
)

# KEYS: seq, origin, then (stream, trim marker) per channel
# ARGV: after (exclusive position, 0: from the oldest), entries read per channel, max bytes of
#       frames in the page, history ttl ms, then per channel the bytes its id line adds to a
#       frame besides the position's digits (len("id: ") + len(":<channel>\n"))
# Returns {seq, origin, cutoff_us, more, {trimmed, exists per channel}, {index, id, body, t...}}
#
# The paging rule, the same as the reader's (``redis_reader``): each channel is read with
# XRANGE ... COUNT n+1; a channel that returns more than n entries is "cut" at its n-th, and
# the page holds only positions up to the lowest cut among the cut channels, because a channel
# cut short may hold entries below another channel's later entries. Those are merged by
# position, and the page stops before the frame that would pass max_bytes (it always holds
# at least one event when any is retained). ``more``: something was left out (a cut, or the
# byte limit), so a page from after its last position is not empty.
# Entries past the time limit that no publish has trimmed yet are skipped, and count as trimmed
# (``trimmed`` per channel: its marker, or the newest such entry above ``after``) so a resume from
# before them is known not to be exact. Positions are never behind the store time, so entries
# below cutoff_us are expired and XRANGE starts at it; a few positions that ran ahead of the clock
# in a burst are skipped one batch at a time.
HISTORY = """
local clock = redis.call('TIME')
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local cutoff_us = now_us - tonumber(ARGV[4]) * 1000
local after = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local max_bytes = tonumber(ARGV[3])
local function position(id) return tonumber(string.match(id, '^(%d+)')) end
local function id_of(at) return string.format('%.0f', at) .. '-0' end
local function field(entry, name)
  local fields = entry[2]
  for j = 1, #fields, 2 do
    if fields[j] == name then return fields[j + 1] end
  end
  return nil
end
local function expired(entry) return tonumber(field(entry, 't') or '0') * 1000 < cutoff_us end
local info, candidates = {}, {}
local cut = nil
local more = 0
for i = 3, #KEYS, 2 do
  local stream = KEYS[i]
  local trimmed = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  local from = after
  local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #newest > 0 and field(newest[1], 'x') then  -- deleted: nothing before its marker is served
    from = math.max(from, position(newest[1][1]))
  elseif from < cutoff_us - 1 then
    if after > 0 then
      local old = redis.call('XREVRANGE', stream, '(' .. id_of(cutoff_us), '(' .. id_of(after),
                             'COUNT', 1)
      if #old > 0 then trimmed = math.max(trimmed, position(old[1][1])) end
    end
    from = cutoff_us - 1
  end
  -- Read in growing batches, only as far as this channel alone could fill the page: a page
  -- of big events must not copy COUNT of them per channel inside Redis.
  local batch = 16
  local raw
  for _ = 1, 1000 do  -- bounded: a script that loops would block every client of this Redis
    raw = redis.call('XRANGE', stream, '(' .. id_of(from), '+', 'COUNT', batch)
    local k = 0
    while k < #raw and expired(raw[k + 1]) do k = k + 1 end
    if k == 0 then break end
    from = position(raw[k][1])
    trimmed = math.max(trimmed, from)
  end
  local got, bytes, exhausted = {}, 0, false
  for _ = 1, 1000 do
    for j = 1, #raw do
      got[#got + 1] = raw[j]
      bytes = bytes + #(field(raw[j], 'b') or '')
    end
    if #raw < batch then exhausted = true; break end
    if bytes >= max_bytes or #got >= count then break end
    batch = math.min(batch * 2, 256)
    raw = redis.call('XRANGE', stream, '(' .. raw[#raw][1], '+', 'COUNT', batch)
  end
  if not exhausted then  -- cut short: later entries of other channels must wait for a page
    local at = position(got[#got][1])
    if cut == nil or at < cut then cut = at end
    more = 1
  end
  local index = (i - 1) / 2
  local id_line = tonumber(ARGV[4 + index])
  for j = 1, #got do
    if field(got[j], 'b') then  -- a deletion's marker entry (no body) is no event
      candidates[#candidates + 1] = {position(got[j][1]), index, got[j], id_line}
    end
  end
  info[#info + 1] = string.format('%.0f', trimmed)
  info[#info + 1] = redis.call('EXISTS', stream)
end
table.sort(candidates, function(a, b) return a[1] < b[1] end)
local page = {}
local size, taken = 0, 0
for _, item in ipairs(candidates) do
  if cut ~= nil and item[1] > cut then more = 1; break end
  local body = field(item[3], 'b') or ''
  local frame = item[4] + #string.match(item[3][1], '^(%d+)') + #body
  if taken > 0 and size + frame > max_bytes then more = 1; break end
  size = size + frame
  taken = taken + 1
  page[#page + 1] = item[2]
  page[#page + 1] = item[3][1]
  page[#page + 1] = body
  page[#page + 1] = field(item[3], 't') or '0'
end
return {redis.call('GET', KEYS[1]) or '0', redis.call('GET', KEYS[2]) or '0',
        string.format('%.0f', cutoff_us), more, info, page}
"""

# KEYS: seq, origin, stream, trim marker, tombstone, notify stream, notify trim marker, the
#       channel's Durable Stream state
# ARGV: anyway (1/0), history ttl ms, notify length, channel
# Returns -1: deleted already; 0: no history, no Durable Stream and not anyway (nothing done);
# 1: deleted.
# ``delete_channel`` (``redis_lua``) leaves one marker entry (field x, no body) at the next
# position of the sequence in the same atomic step as the tombstone, so every reader meets the
# deletion in position order with the other events it reads; HISTORY starts a channel after it.
DELETE = (
    NOTIFY
    + STORE
    + MARKS
    + """
local gone = redis.call('GET', KEYS[5])
if gone and string.sub(gone, 1, 1) ~= 'c' then return -1 end  -- (a closed one may be deleted)
if ARGV[1] == '0' and redis.call('EXISTS', KEYS[3]) == 0 and redis.call('EXISTS', KEYS[8]) == 0
then
  return 0
end
local clock = redis.call('TIME')
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local at = delete_channel(now_us, ARGV[2])
notify(KEYS[6], KEYS[7], ARGV[3], ARGV[2], at, {ARGV[4]})
return 1
"""
)

# KEYS: seq, origin, stream, trim marker, tombstone, notify stream, notify trim marker, the
#       channel's Durable Stream state
# ARGV: history ttl ms, notify length, channel
# Returns -1: deleted (nothing done); 0: closed already; 1: closed; 2: closed, a Durable Stream
# with it.
# As DELETE: ``close_channel`` (``redis_lua``) leaves the marker entry (field z) at the next
# position in the same atomic step as the mark that refuses publishes (the tombstone key, valued
# "c<position>"), so a publish is stored before the close or refused, and every reader meets the
# close after every event before it.
CLOSE = (
    NOTIFY
    + STORE
    + MARKS
    + """
local gone = redis.call('GET', KEYS[5])
if gone then return string.sub(gone, 1, 1) == 'c' and 0 or -1 end
local clock = redis.call('TIME')
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local stream = redis.call('EXISTS', KEYS[8])
local at = close_channel(now_us, ARGV[1])
notify(KEYS[6], KEYS[7], ARGV[2], ARGV[1], at, {ARGV[3]})
return 1 + stream
"""
)
