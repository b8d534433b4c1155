"""Redis backplane: the Lua functions its scripts share, so that a Durable Stream's append stores
its events, and its close and delete leave their marks, by the very code the channel scripts use.

Each constant is Lua source defining ``local function``s, prepended to a script's body
(``redis_scripts``, ``redis_streams_lua``):

- ``NOTIFY``: ``notify(...)``, the notify entry every writing script ends with;
- ``STORE``: ``position(id)``, ``take(...)`` (the next position of the sequence) and
  ``store(...)`` (one event appended to its channel's stream, trimmed by size and age, its trim
  marker kept);
- ``MARKS``: ``delete_channel(...)`` and ``close_channel(...)``, a deletion's or a close's marker
  entry at the next position with its tombstone, and ``revive_channel(...)``, which lifts a
  deletion's tombstone for a stream created again. They take the channel keys every such script
  starts with: ``KEYS[1..5]`` = seq, origin, the channel's stream, its trim marker, its
  tombstone (``KEYS[6..7]``, the notify stream and its marker, go to ``notify``).
"""

from __future__ import annotations

__all__ = ["MARKS", "NOTIFY", "NOTIFY_BYTES", "NOTIFY_NAMES", "STORE"]

#: A notify entry names at most this many channels, of this many bytes in all; more are "*".
NOTIFY_NAMES = 32
NOTIFY_BYTES = 1024

# Appends a notify entry: its id is the newest position the script stored, its field ``c`` the
# channels it stored on, once each, joined by spaces (no channel name holds one), or ``*`` when
# they are more than NOTIFY_NAMES or their names longer than NOTIFY_BYTES (a reader then reads
# every channel it follows), so an entry stays small whatever the batch. Trims the stream to
# about ``length`` entries (``redis_scripts.NOTIFY_LENGTH``) and, when that removed entries,
# notes the oldest id still kept in the notify trim marker: a reader whose cursor is below it
# may have missed entries (XTRIM and XADD's MAXLEN keep no record of what they removed). Both
# expire after the history ttl of quiet, as the channels' streams do.
NOTIFY = """
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

# ``store`` appends one event (its frame body) at position ``at`` (a number), stored at
# ``now_ms`` (text), and returns the position as text. XADD's own MAXLEN trimming does not record
# what it removed (Redis 7.0's max-deleted-entry-id counts XDEL only), so it notes the newest
# position it trims in the channel's trim marker; a stream that does not exist (new, or expired
# whole after a quiet spell) marks everything before the time limit as unknown. Age trimming
# runs only when the oldest entry is past the limit: a reverse range from the limit costs time in
# proportion to the stream's length, and usually finds nothing.
# ``take`` is the next position for one entry, from the sequence (at least the time in µs): so
# stored positions form a prefix of the sequence (``hub.backplane.redis``).
STORE = """
local function position(id) return tonumber(string.match(id, '^(%d+)')) end
local function take(seq, origin, now_us)
  local last = tonumber(redis.call('GET', seq) or '0')
  if last == 0 then redis.call('SET', origin, string.format('%.0f', now_us)) end
  local at = string.format('%.0f', math.max(last + 1, now_us))
  redis.call('SET', seq, at)
  return at
end
local function store(stream, marker, body, at, now_us, now_ms, maxlen, ttl_ms)
  local trimmed = 0
  if redis.call('EXISTS', stream) == 0 then
    trimmed = now_us - ttl_ms * 1000
  end
  local over = redis.call('XLEN', stream) + 1 - maxlen
  if over > 0 then
    local victims = redis.call('XRANGE', stream, '-', '+', 'COUNT', over)
    if #victims > 0 then trimmed = position(victims[#victims][1]) end
  end
  local text = string.format('%.0f', at)
  redis.call('XADD', stream, 'MAXLEN', maxlen, text .. '-0', 'b', body, 't', now_ms)
  local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  if #first > 0 and position(first[1][1]) < now_us - ttl_ms * 1000 then
    local oldest = string.format('%.0f', now_us - ttl_ms * 1000) .. '-0'
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
  return text
end
"""

# One marker entry (no body: field x for a deletion, z for a close, r for a revival) takes the
# next position of the sequence in the same atomic step as its tombstone, so stored positions
# still form a prefix of it and every reader meets the mark in position order with the other
# events it reads (``redis_reader``). Each returns the marker's position (text). ``KEYS[8]``,
# when given, is the channel's Durable Stream state (``redis_streams_lua``).
# A deletion: the events before its marker are no longer served (HISTORY starts a channel after
# its marker) but stay until the stream expires with the tombstone: a reader still behind must
# deliver them, since they were acknowledged before the deletion. The trim marker goes: a resume
# of a stream that also names live channels needs no reset for this one. A Durable Stream on
# the channel goes with it.
# A close: its tombstone is valued "c<position>" (the publish script's one lookup per event
# refuses both) and lasts history_ttl; the history is untouched and expires as it would, the
# stream's expiry pushed to the mark's, so the marker outlives no reader's need. A Durable
# Stream's close lasts as long as the stream (its state's expiry, or none): its marker's value
# "s" tells the readers so.
# A revival (a Durable Stream created on a deleted or closed channel): the tombstone goes, and
# after a deletion the events before its marker too (from then on the newest entry is no longer
# the deletion's marker, so HISTORY would serve them again); its marker tells the readers to
# forget the deletion or close.
MARKS = """
local function mark(kind, value, now_us, ttl_ms)
  local at = take(KEYS[1], KEYS[2], now_us)
  redis.call('XADD', KEYS[3], at .. '-0', kind, value, 't', string.format('%.0f', now_us / 1000))
  redis.call('PEXPIRE', KEYS[3], ttl_ms)
  return at
end
local function delete_channel(now_us, ttl_ms)
  local at = mark('x', '1', now_us, ttl_ms)
  redis.call('DEL', KEYS[4])
  redis.call('SET', KEYS[5], at, 'PX', ttl_ms)
  if KEYS[8] then redis.call('DEL', KEYS[8]) end
  return at
end
local function close_channel(now_us, ttl_ms)
  local stream = KEYS[8] and redis.call('EXISTS', KEYS[8]) == 1
  local at = mark('z', stream and 's' or '1', now_us, ttl_ms)
  if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('PEXPIRE', KEYS[4], ttl_ms) end
  local lasts = tonumber(ttl_ms)
  if stream then
    redis.call('HSET', KEYS[8], 'closed', '1')
    lasts = redis.call('PTTL', KEYS[8])
  end
  if lasts > 0 then
    redis.call('SET', KEYS[5], 'c' .. at, 'PX', lasts)
  else
    redis.call('SET', KEYS[5], 'c' .. at)
  end
  return at
end
local function revive_channel(now_us, ttl_ms)
  local gone = redis.call('GET', KEYS[5])
  redis.call('DEL', KEYS[5])
  if string.sub(gone, 1, 1) ~= 'c' then redis.call('XTRIM', KEYS[3], 'MINID', gone .. '-0') end
  return mark('r', '1', now_us, ttl_ms)
end
"""
