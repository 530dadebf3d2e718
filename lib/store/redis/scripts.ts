/**
 * The Lua scripts of RedisStore. Each runs atomically on the server. Every key a script
 * touches is passed in KEYS (so they run unchanged on Redis Cluster, where all keys of one
 * cache share a slot); a script that acts on a generation first checks that the generation
 * pointer still holds the id the caller built the keys from, and answers `STALE` if not:
 * the caller re-reads the pointer and tries again.
 *
 * Arguments are sent as one array through `call('EVALSHA', ...)`, never spread, so a batch
 * of 100 000 changes is one command; inside, `unpack` works on slices of at most
 * {@link SLICE} arguments (Lua's C stack holds about 8 000).
 *
 * @module
 */

import { createHash } from 'node:crypto';

/**
 * Most arguments handed to one redis.call through unpack.
 *
 * @example
 * for (let i = 0; i < args.length; i += SLICE) pipeline.call('HSET', [key, ...args.slice(i, i + SLICE)]);
 */
export const SLICE = 1000;

/**
 * A script: its source and its SHA1 (for EVALSHA).
 *
 * @example
 * await client.call('EVALSHA', [LOCK.sha, 1, lockKey, token, '5000']);
 */
export interface Script {
  readonly name: string;
  readonly source: string;
  readonly sha: string;
}

function script(name: string, body: string): Script {
  const source = `${HELPERS}\n${body}`;
  return { name, source, sha: createHash('sha1').update(source).digest('hex') };
}

const HELPERS = `
local function slices(command, key, from, to)
  local i = from
  while i <= to do
    local j = math.min(i + ${SLICE} - 1, to)
    redis.call(command, key, unpack(ARGV, i, j))
    i = j + 1
  end
end
local function purge(data, exp, now, limit)
  if redis.call('EXISTS', exp) == 0 then return 0 end
  local dead = redis.call('ZRANGEBYSCORE', exp, '-inf', now, 'LIMIT', 0, limit)
  if #dead > 0 then
    redis.call('HDEL', data, unpack(dead))
    redis.call('ZREM', exp, unpack(dead))
  end
  return #dead
end
local function current(genKey)
  return redis.call('GET', genKey) or ''
end`;

/**
 * Applies one batch of changes to the live generation (RedisStore.saveChanges).
 *
 * KEYS: gen, meta, data, exp (of generation ARGV[2]).
 * ARGV: 1 expected live generation ('' = none: the batch creates generation ARGV[2]),
 * 2 the generation of KEYS, 3 expected order counter, 4 savedAt, 5 codec, 6 node, 7 v8,
 * 8 now for the purge of expired entries ('' = no purge), 9 sets, 10 deletes, 11 expiring,
 * 12 the cache's dependency links as JSON ('' = keep those recorded),
 * then sets × (field, record), deletes × field, expiring × (expiresAt, field).
 * Returns 'OK' or 'STALE'.
 *
 * @example
 * await runScript(client, APPLY, keys, args);
 */
export const APPLY = script(
  'apply',
  `
local live = current(KEYS[1])
if live ~= ARGV[1] then return 'STALE' end
if live == '' then
  redis.call('SET', KEYS[1], ARGV[2])
elseif (redis.call('HGET', KEYS[2], 'seq') or '') ~= ARGV[3] then
  return 'STALE'
end
local sets, deletes, expiring = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local first = 13
local setsEnd = first + 2 * sets - 1
local deletesEnd = setsEnd + deletes
if sets > 0 then slices('HSET', KEYS[3], first, setsEnd) end
if deletes > 0 then slices('HDEL', KEYS[3], setsEnd + 1, deletesEnd) end
if redis.call('EXISTS', KEYS[4]) == 1 then
  -- A key written again loses the expiry it had (it is added back below if it has one).
  local fields = {}
  for i = first, setsEnd, 2 do
    fields[#fields + 1] = ARGV[i]
    if #fields == ${SLICE} then redis.call('ZREM', KEYS[4], unpack(fields)); fields = {} end
  end
  if #fields > 0 then redis.call('ZREM', KEYS[4], unpack(fields)) end
  if deletes > 0 then slices('ZREM', KEYS[4], setsEnd + 1, deletesEnd) end
end
if expiring > 0 then slices('ZADD', KEYS[4], deletesEnd + 1, deletesEnd + 2 * expiring) end
redis.call('HSET', KEYS[2], 'seq', string.format('%d', tonumber(ARGV[3]) + sets), 'savedAt', ARGV[4], 'codec', ARGV[5], 'node', ARGV[6], 'v8', ARGV[7])
if ARGV[12] ~= '' then redis.call('HSET', KEYS[2], 'dependsOn', ARGV[12]) end
if ARGV[8] ~= '' then purge(KEYS[3], KEYS[4], ARGV[8], ${SLICE}) end
return 'OK'`,
);

/**
 * Makes a fully written generation the live one (RedisStore.save), after checking that all
 * of it arrived, and unlinks the previous one.
 *
 * KEYS: gen, new meta, new data, new exp [, old meta, old data, old exp].
 * ARGV: 1 expected live generation ('' = none), 2 new generation, 3 fields, 4 expiring fields.
 * Returns 'OK', 'STALE' or 'INCOMPLETE'.
 *
 * @example
 * await runScript(client, COMMIT, keys, args);
 */
export const COMMIT = script(
  'commit',
  `
if current(KEYS[1]) ~= ARGV[1] then return 'STALE' end
if redis.call('EXISTS', KEYS[2]) == 0 or redis.call('HLEN', KEYS[3]) ~= tonumber(ARGV[3])
  or redis.call('ZCARD', KEYS[4]) ~= tonumber(ARGV[4]) then
  return 'INCOMPLETE'
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('PERSIST', KEYS[2])
redis.call('PERSIST', KEYS[3])
redis.call('PERSIST', KEYS[4])
if #KEYS > 4 then redis.call('UNLINK', KEYS[5], KEYS[6], KEYS[7]) end
return 'OK'`,
);

/**
 * Drops the live generation of one or more caches at once (delete, invalidateCascade): the
 * pointers are deleted and the data unlinked (freed in the background by Redis).
 *
 * KEYS: per cache, gen, meta, data, exp of its expected generation (for none, the gen key four times).
 * ARGV: per cache, the expected generation ('' = none).
 * Returns 'STALE' (nothing done) or, per cache, 1 if it had a generation, else 0.
 *
 * @example
 * await runScript(client, DROP, keys, args);
 */
export const DROP = script(
  'drop',
  `
for i = 1, #ARGV do
  if current(KEYS[4 * i - 3]) ~= ARGV[i] then return 'STALE' end
end
local dropped = {}
for i = 1, #ARGV do
  if ARGV[i] == '' then
    dropped[i] = 0
  else
    redis.call('DEL', KEYS[4 * i - 3])
    redis.call('UNLINK', KEYS[4 * i - 2], KEYS[4 * i - 1], KEYS[4 * i])
    dropped[i] = 1
  end
end
return dropped`,
);

/**
 * Moves the live generation aside (quarantine): its keys are renamed, the pointer deleted.
 *
 * KEYS: gen, meta, data, exp, quarantined meta, data, exp. ARGV: 1 expected generation.
 * Returns 'OK', 'NONE' (nothing saved), 'STALE' or 'TAKEN' (the target exists).
 *
 * @example
 * await runScript(client, QUARANTINE, keys, args);
 */
export const QUARANTINE = script(
  'quarantine',
  `
local live = current(KEYS[1])
if live ~= ARGV[1] then return 'STALE' end
if live == '' then return 'NONE' end
if redis.call('EXISTS', KEYS[5], KEYS[6], KEYS[7]) > 0 then return 'TAKEN' end
for i = 2, 4 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('RENAME', KEYS[i], KEYS[i + 3])
    redis.call('PERSIST', KEYS[i + 3])
  end
end
redis.call('DEL', KEYS[1])
return 'OK'`,
);

/**
 * Removes entries expired by the caller's clock from the live generation.
 *
 * KEYS: gen, data, exp. ARGV: 1 generation, 2 now, 3 most entries to remove.
 * Returns how many were removed.
 *
 * @example
 * await runScript(client, PURGE, keys, args);
 */
export const PURGE = script(
  'purge',
  `
if current(KEYS[1]) ~= ARGV[1] then return 0 end
return purge(KEYS[2], KEYS[3], ARGV[2], tonumber(ARGV[3]))`,
);

/**
 * Takes a lock: SET NX PX. KEYS: lock. ARGV: 1 token, 2 ttl in ms.
 * Returns -3 when taken, else the holder's remaining ms (PTTL: -1 no expiry, -2 gone meanwhile).
 *
 * @example
 * await runScript(client, LOCK, keys, args);
 */
export const LOCK = script(
  'lock',
  `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return -3 end
return redis.call('PTTL', KEYS[1])`,
);

/**
 * Releases a lock if it is still the caller's (compare-and-delete) and announces it.
 * KEYS: lock. ARGV: 1 token, 2 channel. Returns 1 if released, 0 if not ours (expired, taken over).
 *
 * @example
 * await runScript(client, UNLOCK, keys, args);
 */
export const UNLOCK = script(
  'unlock',
  `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], KEYS[1])
return 1`,
);

/**
 * Every script, to load once per connection.
 *
 * @example
 * await Promise.all(SCRIPTS.map((script) => client.call('SCRIPT', ['LOAD', script.source])));
 */
export const SCRIPTS: readonly Script[] = [APPLY, COMMIT, DROP, QUARANTINE, PURGE, LOCK, UNLOCK];
