"""Redis backplane: the four Lua scripts: publish, history, delete and close.

Each runs atomically inside Redis, which is what the backplane's guarantees rest on: a publish
takes its positions and stores its events in one step, a history page is read from one
snapshot of all its channels (see ``hub.backplane.redis``), and a deletion leaves its tombstone
and its marker entry in one step with the channel's events (``hub.backplane.redis_private``),
and a close likewise (its mark in the same tombstone key, valued ``c<position>``).
"""

from __future__ import annotations

__all__ = ["CLOSE", "DELETE", "HISTORY", "NOTIFY_LENGTH", "PUBLISH"]

#: Entries the notify stream keeps (about: trimmed a node at a time). A reader further behind
#: than this reads its channels' streams themselves once (``redis_reader``), so this bounds
#: Redis memory (~50 bytes an entry, at most ~1.1 KB), not correctness.
NOTIFY_LENGTH = 20_000
#: A notify entry names at most this many channels, of this many bytes in all; more are "*".
NOTIFY_NAMES = 32
NOTIFY_BYTES = 1024

# Appends a notify entry: its id is the newest position the script stored, its field ``c`` the
# channels it stored on, once each, joined by spaces (no channel name holds one), or ``*`` when
# they are more than NOTIFY_NAMES or their names longer than NOTIFY_BYTES (a reader then reads
# every channel it follows), so an entry stays small whatever the batch. Trims the stream to
# about the notify length and, when that removed entries, notes the oldest id still kept in the
# notify trim marker: a reader whose cursor is below it may have missed entries (XTRIM and
# XADD's MAXLEN keep no record of what they removed). Both expire after the history ttl of
# quiet, as the channels' streams do.
_NOTIFY = """
local function notify(stream, marker, length, ttl_ms, at, channels)
  local names, seen, bytes = {}, {}, 0
  for _, channel in ipairs(channels) do
    if not seen[channel] then
      seen[channel] = true
      names[#names + 1] = channel
      bytes = bytes + #channel + 1
      if #names > @NAMES@ or bytes > @BYTES@ then names = {'*'}; break end
    end
  end
  redis.call('XADD', stream, at .. '-0', 'c', table.concat(names, ' '))
  if redis.call('XTRIM', stream, 'MAXLEN', '~', length) > 0 then
    local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
    redis.call('SET', marker, string.match(first[1][1], '^(%d+)'))
  end
  redis.call('PEXPIRE', stream, ttl_ms)
  redis.call('PEXPIRE', marker, ttl_ms)
end
""".replace("@NAMES@", str(NOTIFY_NAMES)).replace("@BYTES@", str(NOTIFY_BYTES))

# KEYS: seq, origin, idempotency key, notify stream, notify trim marker, then (stream, trim
#       marker, tombstone) per event
# ARGV: maxlen, ttl ms, idempotency ttl ms, notify length, body per event..., channel per
#       event...
# Returns {0, positions joined by ','} for a new batch; {1, ids joined by ','} for a key seen
# before (its ids, "position:channel": the first batch's, whatever this one's body is); {2, n}
# when the n-th event's channel is deleted, {3, n} when it is closed (its tombstone key holds
# "c<position>": see CLOSE).
# XADD's own MAXLEN trimming does not record what it removed (Redis 7.0's max-deleted-entry-id
# counts XDEL only), so the script notes the newest position it trims in the channel's marker.
PUBLISH = (
    _NOTIFY
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
local oldest = string.format('%.0f', now_us - ttl_ms * 1000) .. '-0'
local now_ms = string.format('%.0f', math.floor(now_us / 1000))
local function position(id) return tonumber(string.match(id, '^(%d+)')) end
local ids, named, channels = {}, {}, {}
local count = (#KEYS - 5) / 3
for i = 6, #KEYS, 3 do
  local stream, marker = KEYS[i], KEYS[i + 1]
  local body = ARGV[5 + (i - 6) / 3]
  local trimmed = 0
  if redis.call('EXISTS', stream) == 0 then
    -- new, or expired whole after a quiet spell: what came before the time limit is unknown
    trimmed = now_us - ttl_ms * 1000
  end
  local over = redis.call('XLEN', stream) + 1 - maxlen
  if over > 0 then
    local victims = redis.call('XRANGE', stream, '-', '+', 'COUNT', over)
    if #victims > 0 then trimmed = position(victims[#victims][1]) end
  end
  local at = math.max(last + 1, now_us)
  last = at
  local text = string.format('%.0f', at)
  redis.call('XADD', stream, 'MAXLEN', maxlen, text .. '-0', 'b', body, 't', now_ms)
  -- Age trimming only when the oldest entry is past the limit: a reverse range from the limit
  -- costs time in proportion to the stream's length, and usually finds nothing.
  local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  if #first > 0 and position(first[1][1]) < now_us - ttl_ms * 1000 then
    local expired = redis.call('XREVRANGE', stream, '(' .. oldest, '-', 'COUNT', 1)
    if #expired > 0 then
      trimmed = math.max(trimmed, position(expired[1][1]))
      redis.call('XTRIM', stream, 'MINID', oldest)
    end
  end
  if trimmed > 0 then
    local before = tonumber(redis.call('GET', marker) or '0')
    if trimmed > before then redis.call('SET', marker, string.format('%.0f', trimmed)) end
  end
  redis.call('PEXPIRE', stream, ttl_ms)
  redis.call('PEXPIRE', marker, ttl_ms)
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

# KEYS: seq, origin, stream, trim marker, tombstone, notify stream, notify trim marker
# ARGV: anyway (1/0), history ttl ms, notify length, channel
# Returns -1: deleted already; 0: no history and not anyway (nothing done); 1: deleted.
# One marker entry (field x, no body) takes the next position of the sequence in the same
# atomic step, so stored positions still form a prefix of it and every reader meets the
# deletion in position order with the other events it reads. The events before the marker are
# no longer served (HISTORY starts a channel after its marker) but stay until the stream
# expires with the tombstone: a reader still behind must deliver them, since they were
# acknowledged before the deletion. The trim marker goes: a resume of a stream that also names
# live channels needs no reset for this one.
DELETE = (
    _NOTIFY
    + """
local gone = redis.call('GET', KEYS[5])
if gone and string.sub(gone, 1, 1) ~= 'c' then return -1 end  -- (a closed one may be deleted)
if redis.call('EXISTS', KEYS[3]) == 0 and ARGV[1] == '0' then return 0 end
local clock = redis.call('TIME')
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if last == 0 then redis.call('SET', KEYS[2], string.format('%.0f', now_us)) end
local at = string.format('%.0f', math.max(last + 1, now_us))
redis.call('SET', KEYS[1], at)
redis.call('DEL', KEYS[4])
redis.call('XADD', KEYS[3], at .. '-0', 'x', '1', 't', string.format('%.0f', now_us / 1000))
redis.call('PEXPIRE', KEYS[3], ARGV[2])
redis.call('SET', KEYS[5], at, 'PX', ARGV[2])
notify(KEYS[6], KEYS[7], ARGV[3], ARGV[2], at, {ARGV[4]})
return 1
"""
)

# KEYS: seq, origin, stream, trim marker, tombstone, notify stream, notify trim marker
# ARGV: history ttl ms, notify length, channel
# Returns -1: deleted (nothing done); 0: closed already; 1: closed.
# As DELETE: one marker entry (field z, no body) at the next position, in the same atomic step
# as the mark that refuses publishes (the tombstone key, valued "c<position>"), so a publish is
# stored before the close or refused, and every reader meets the close after every event before
# it. The history is untouched (HISTORY skips entries without a body) and expires as it would;
# the stream's own expiry is pushed to the mark's, so the marker outlives no reader's need.
CLOSE = (
    _NOTIFY
    + """
local gone = redis.call('GET', KEYS[5])
if gone then return string.sub(gone, 1, 1) == 'c' and 0 or -1 end
local clock = redis.call('TIME')
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if last == 0 then redis.call('SET', KEYS[2], string.format('%.0f', now_us)) end
local at = string.format('%.0f', math.max(last + 1, now_us))
redis.call('SET', KEYS[1], at)
redis.call('XADD', KEYS[3], at .. '-0', 'z', '1', 't', string.format('%.0f', now_us / 1000))
redis.call('PEXPIRE', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('PEXPIRE', KEYS[4], ARGV[1]) end
redis.call('SET', KEYS[5], 'c' .. at, 'PX', ARGV[1])
notify(KEYS[6], KEYS[7], ARGV[2], ARGV[1], at, {ARGV[3]})
return 1
"""
)
