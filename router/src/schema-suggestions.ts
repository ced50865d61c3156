/**
 * graphql-js ends validation and coercion messages with "Did you mean …?" suggestions that
 * name fields, types and enum values of the schema: only admin tokens get them (the schema is
 * theirs to introspect). The one place that strips them, for HTTP and both subscription
 * transports.
 */
export function withoutSchemaSuggestions(message: string): string {
  return message.includes(' Did you mean ') ? message.replace(/ Did you mean .*\?$/s, '') : message;
}
