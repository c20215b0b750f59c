/** Milliseconds since the epoch. Injected so rotation and destruction can be tested without waiting. */
export interface Clock {
  now(): number;
}
