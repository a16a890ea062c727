// oidc-provider's storage on Redis, for the production-shaped bench (servicekonto on PostgreSQL +
// Redis against the peer on Redis). It follows the adapter interface oidc-provider documents
// (upsert, find, findByUid, findByUserCode, consume, destroy, revokeByGrantId) the way the Redis
// adapter of its examples does: one key per model instance with the instance's lifetime, a
// list per grant naming the tokens to revoke with it, and single-use models as hashes so that
// `consume` marks them in place.
//
// REDIS_URL selects the server; REDIS_PREFIX keeps one run's keys apart from another's.
import Redis from 'ioredis';

const client = new Redis(process.env.REDIS_URL, { keyPrefix: process.env.REDIS_PREFIX ?? 'oidc:' });

// Models issued under a grant: revoking the grant revokes them.
const grantable = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest',
]);
// Models used once: `consume` marks them.
const consumable = new Set(['AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);

const grantKey = (grantId) => `grant:${grantId}`;
const userCodeKey = (userCode) => `userCode:${userCode}`;
const uidKey = (uid) => `uid:${uid}`;

export default class RedisAdapter {
  constructor(name) {
    this.name = name;
  }

  key(id) {
    return `${this.name}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const json = JSON.stringify(payload);
    const multi = client.multi();
    if (consumable.has(this.name)) multi.hset(key, { payload: json });
    else multi.set(key, json);
    if (expiresIn) multi.expire(key, expiresIn);
    if (grantable.has(this.name) && payload.grantId) {
      const list = grantKey(payload.grantId);
      multi.rpush(list, key);
      // The list lives as long as its longest-lived token.
      const ttl = await client.ttl(list);
      if (expiresIn > ttl) multi.expire(list, expiresIn);
    }
    if (payload.userCode) {
      multi.set(userCodeKey(payload.userCode), id);
      if (expiresIn) multi.expire(userCodeKey(payload.userCode), expiresIn);
    }
    if (payload.uid) {
      multi.set(uidKey(payload.uid), id);
      if (expiresIn) multi.expire(uidKey(payload.uid), expiresIn);
    }
    await multi.exec();
  }

  async find(id) {
    const key = this.key(id);
    if (consumable.has(this.name)) {
      const { payload, ...marks } = await client.hgetall(key);
      if (!payload) return undefined;
      return { ...marks, ...JSON.parse(payload) };
    }
    const json = await client.get(key);
    return json ? JSON.parse(json) : undefined;
  }

  async findByUid(uid) {
    const id = await client.get(uidKey(uid));
    return id ? this.find(id) : undefined;
  }

  async findByUserCode(userCode) {
    const id = await client.get(userCodeKey(userCode));
    return id ? this.find(id) : undefined;
  }

  async consume(id) {
    await client.hset(this.key(id), 'consumed', Math.floor(Date.now() / 1000));
  }

  async destroy(id) {
    await client.del(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const list = grantKey(grantId);
    // The list holds keys without the prefix; ioredis adds it to each `del`.
    const keys = await client.lrange(list, 0, -1);
    const multi = client.multi();
    for (const key of keys) multi.del(key);
    multi.del(list);
    await multi.exec();
  }
}
