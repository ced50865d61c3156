import { printSchema, Supergraph } from '@apollo/federation-internals';
import { buildSchema, type GraphQLSchema } from 'graphql';

/**
 * The API schema (what clients may ask) of a supergraph, built with this module's `graphql`.
 *
 * Why not `gateway.schema`: @apollo/gateway is CommonJS and loads graphql's CommonJS build,
 * while our ESM code loads its ESM build; graphql-js refuses a schema from the other build
 * ("Cannot use GraphQLSchema from another module or realm"). Printing the API schema with
 * federation's own printer and rebuilding it here keeps one realm per schema.
 */
export function apiSchemaFromSupergraph(supergraphSdl: string): GraphQLSchema {
  // `supportedFeatures: null`: the SECURITY features (@authenticated, @requiresScopes) are
  // enforced by the router's executor, which every per-event query goes through; this schema
  // only validates shapes.
  return buildSchema(printSchema(Supergraph.build(supergraphSdl, { supportedFeatures: null }).apiSchema()));
}
