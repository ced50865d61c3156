/**
 * Response names, variable names and the keys of subgraph answers are strings a client or a
 * subgraph chose, and any GraphQL name may be one that Object.prototype also has (`__proto__`,
 * `constructor`, `toString`, …). On an ordinary object, reading such a name finds the
 * prototype's member and assigning `__proto__` replaces the object's prototype, so these names
 * are read and written as own properties only. Where a name is known when an operation is
 * compiled, `isPrototypeName` is asked once and every other name keeps plain property access.
 */

export const hasOwn = Object.prototype.hasOwnProperty;

/** True when an ordinary object would read `name` from Object.prototype (or assign it through its `__proto__` setter). */
export function isPrototypeName(name: string): boolean {
  return name in Object.prototype;
}

/** The object's own value for `name`; undefined when only its prototype has one. */
export function getOwn(object: object, name: string): unknown {
  return hasOwn.call(object, name) ? (object as Record<string, unknown>)[name] : undefined;
}

/** Sets `name` as an own, enumerable data property, whatever Object.prototype holds under that name. */
export function setOwn(object: object, name: string, value: unknown): void {
  Object.defineProperty(object, name, { value, writable: true, enumerable: true, configurable: true });
}
