/**
 * The subscriber connection of a RedisStore: a connection in subscribe mode cannot run
 * other commands, so it is a second one, opened the first time something listens. ioredis
 * subscribes its channels again after a reconnection (`autoResubscribe`).
 *
 * @module
 */

import type { RedisClient } from './connection.js';

/** Receives the messages of one channel. Called synchronously; must not throw. */
export type ChannelListener = (message: string) => void;

/**
 * Channels and their listeners over one lazily opened connection.
 *
 * @example
 * const subscriber = new Subscriber(() => connectOwnClient(settings, 'subscribe'));
 * await subscriber.add('cg:default:bus', (message) => console.log(message));
 */
export class Subscriber {
  readonly #open: () => Promise<RedisClient>;
  #client: Promise<RedisClient> | undefined;
  readonly #listeners = new Map<string, Set<ChannelListener>>();
  /** SUBSCRIBE of each channel, once (concurrent `add`s of one channel wait for the same one). */
  readonly #subscribed = new Map<string, Promise<unknown>>();
  /** Called when the connection is ready again after a loss (messages may have been missed). */
  readonly #onResume: () => void;

  /**
   * @param open - opens the connection (called again after a failed attempt)
   * @param onResume - called each time the connection is ready again after it was lost
   * @example
   * new Subscriber(async () => client.duplicate(), () => console.log('back'));
   */
  constructor(open: () => Promise<RedisClient>, onResume: () => void = () => undefined) {
    this.#open = open;
    this.#onResume = onResume;
  }

  #connect(): Promise<RedisClient> {
    if (this.#client === undefined) {
      const opening = this.#open().then((client) => {
        client.on('message', (channel: string, message: string) => {
          for (const listener of this.#listeners.get(channel) ?? []) listener(message);
        });
        // The first 'ready' came before `open` resolved: any later one is a reconnection.
        // ioredis sends the SUBSCRIBEs again right after 'ready'; a PING queued behind them
        // answers once they are in force, so nothing published after the resume is missed.
        client.on('ready', () => {
          queueMicrotask(() => {
            void client.ping().then(
              () => this.#onResume(),
              () => undefined, // lost again: the next 'ready' resumes
            );
          });
        });
        return client;
      });
      this.#client = opening;
      opening.catch(() => {
        if (this.#client === opening) this.#client = undefined;
      });
    }
    return this.#client;
  }

  /**
   * Adds a listener to `channel`, subscribing the connection to it first if needed.
   *
   * @throws what opening the connection or SUBSCRIBE threw (the listener is not added)
   * @example
   * await subscriber.add(channel, listener);
   */
  async add(channel: string, listener: ChannelListener): Promise<void> {
    const client = await this.#connect();
    let subscribed = this.#subscribed.get(channel);
    if (subscribed === undefined) {
      subscribed = client.subscribe(channel);
      this.#subscribed.set(channel, subscribed);
    }
    try {
      await subscribed;
    } catch (error) {
      if (this.#subscribed.get(channel) === subscribed) this.#subscribed.delete(channel);
      throw error;
    }
    let listeners = this.#listeners.get(channel);
    if (listeners === undefined) {
      listeners = new Set();
      this.#listeners.set(channel, listeners);
    }
    listeners.add(listener);
  }

  /**
   * Removes a listener; the last one of a channel unsubscribes it.
   *
   * @example
   * await subscriber.remove(channel, listener);
   */
  async remove(channel: string, listener: ChannelListener): Promise<void> {
    const listeners = this.#listeners.get(channel);
    if (listeners === undefined || !listeners.delete(listener) || listeners.size > 0) return;
    this.#listeners.delete(channel);
    this.#subscribed.delete(channel);
    const client = await this.#client?.catch(() => undefined);
    // Not connected: ioredis would subscribe it again on reconnection, so say so now if we can.
    if (client?.status === 'ready') await client.unsubscribe(channel).catch(() => undefined);
  }

  /**
   * Closes the connection and forgets every listener. Idempotent.
   *
   * @example
   * await subscriber.close();
   */
  async close(): Promise<void> {
    const opening = this.#client;
    this.#client = undefined;
    this.#listeners.clear();
    this.#subscribed.clear();
    const client = await opening?.catch(() => undefined);
    if (client !== undefined) await closeClient(client);
  }
}

/**
 * Closes a connection: QUIT when it is up (pending replies arrive first), then disconnect,
 * which also stops any reconnection.
 *
 * @example
 * await closeClient(client);
 */
export async function closeClient(client: RedisClient): Promise<void> {
  if (client.status === 'ready') await client.quit().catch(() => undefined);
  client.disconnect();
}
