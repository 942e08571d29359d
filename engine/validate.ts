// Payload validators for document channels. Small on purpose: each validator checks one JSON
// value, returns it typed, and throws ValidationError naming the path and what was expected.
// Every string and array validator carries a length bound.

import { AnswerError } from './errors.ts';
import type { Json } from './json.ts';

/** A payload that does not match its channel's shape: an answer to the sender. */
export class ValidationError extends AnswerError {
  override name = 'ValidationError';
  constructor(
    readonly path: string,
    readonly expected: string,
  ) {
    super(`${path === '' ? 'payload' : `payload${path}`}: expected ${expected}`);
  }
}

export interface Validator<T> {
  /** A short description of what is accepted, used in error messages. */
  readonly expected: string;
  readonly optional: boolean;
  check(value: unknown, path: string): T;
}

export type Infer<V> = V extends Validator<infer T> ? T : never;

type Shape = Record<string, Validator<unknown>>;
type RequiredKeys<S extends Shape> = { [K in keyof S]: S[K]['optional'] extends true ? never : K }[keyof S];
type OptionalKeys<S extends Shape> = { [K in keyof S]: S[K]['optional'] extends true ? K : never }[keyof S];
export type ObjectOf<S extends Shape> = { [K in RequiredKeys<S>]: Infer<S[K]> } & {
  [K in OptionalKeys<S>]?: Infer<S[K]>;
};

function validator<T>(expected: string, check: (value: unknown, path: string) => T): Validator<T> {
  return { expected, optional: false, check };
}

function fail(path: string, expected: string): never {
  throw new ValidationError(path, expected);
}

/** Default bound on validated strings, in UTF-16 code units. */
export const stringCharsMaxDefault = 1024;
/** Default bound on validated arrays, in items. */
export const arrayItemsMaxDefault = 256;

export const v = {
  string(options: { minLength?: number; maxLength?: number; pattern?: RegExp } = {}): Validator<string> {
    const min = options.minLength ?? 0;
    const max = options.maxLength ?? stringCharsMaxDefault;
    const pattern = options.pattern;
    const expected = `a string of ${min}..${max} characters${pattern ? ` matching ${pattern}` : ''}`;
    return validator(expected, (value, path) => {
      if (typeof value !== 'string' || value.length < min || value.length > max) fail(path, expected);
      if (pattern !== undefined && !pattern.test(value)) fail(path, expected);
      return value;
    });
  },

  integer(options: { min?: number; max?: number } = {}): Validator<number> {
    const min = options.min ?? Number.MIN_SAFE_INTEGER;
    const max = options.max ?? Number.MAX_SAFE_INTEGER;
    const expected = `an integer in ${min}..${max}`;
    return validator(expected, (value, path) => {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) fail(path, expected);
      return value;
    });
  },

  boolean(): Validator<boolean> {
    return validator('a boolean', (value, path) => (typeof value === 'boolean' ? value : fail(path, 'a boolean')));
  },

  oneOf<const T extends readonly (string | number | boolean)[]>(...values: T): Validator<T[number]> {
    const expected = `one of ${values.map((item) => JSON.stringify(item)).join(', ')}`;
    return validator(expected, (value, path) => {
      for (const item of values) if (item === value) return item;
      return fail(path, expected);
    });
  },

  array<T>(item: Validator<T>, options: { maxItems?: number } = {}): Validator<T[]> {
    const max = options.maxItems ?? arrayItemsMaxDefault;
    const expected = `an array of at most ${max} items`;
    return validator(expected, (value, path) => {
      if (!Array.isArray(value) || value.length > max) fail(path, expected);
      for (let i = 0; i < value.length; i++) item.check(value[i], `${path}[${i}]`);
      return value as T[];
    });
  },

  /** An object with exactly these members; unknown members are rejected. */
  object<S extends Shape>(shape: S): Validator<ObjectOf<S>> {
    const keys = Object.keys(shape);
    const expected = `an object with members {${keys.join(', ')}}`;
    return validator(expected, (value, path) => {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(path, expected);
      const record = value as Record<string, unknown>;
      for (const key in record) {
        if (!Object.hasOwn(shape, key)) fail(`${path}.${key}`, `no member named ${JSON.stringify(key)}`);
      }
      for (const key of keys) {
        const member = shape[key] as Validator<unknown>;
        const present = Object.hasOwn(record, key) && record[key] !== null;
        if (!present) {
          if (!member.optional) fail(`${path}.${key}`, member.expected);
          continue;
        }
        member.check(record[key], `${path}.${key}`);
      }
      return value as ObjectOf<S>;
    });
  },

  optional<T>(inner: Validator<T>): Validator<T | undefined> & { readonly optional: true } {
    return { expected: `${inner.expected} (optional)`, optional: true, check: (value, path) => inner.check(value, path) };
  },

  /** Any JSON value; use only where the handler inspects the value itself. */
  json(): Validator<Json> {
    return validator('any JSON value', (value) => value as Json);
  },
};
