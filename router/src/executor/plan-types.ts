/**
 * The parts of @apollo/query-planner's QueryPlan this executor reads, declared structurally so
 * the router does not depend on the planner package directly (the gateway produces the plans).
 */
export interface PlanSelectionField {
  kind: 'Field';
  name: string;
  alias?: string;
  selections?: PlanSelection[];
}
export interface PlanSelectionFragment {
  kind: 'InlineFragment';
  typeCondition?: string;
  selections: PlanSelection[];
}
export type PlanSelection = PlanSelectionField | PlanSelectionFragment;

export interface PlanFetch {
  kind: 'Fetch';
  serviceName: string;
  variableUsages?: string[];
  requires?: PlanSelection[];
  operation: string;
  operationName: string | undefined;
  operationKind: string;
  inputRewrites?: unknown[];
  outputRewrites?: unknown[];
  contextRewrites?: unknown[];
}
export interface PlanSequence {
  kind: 'Sequence';
  nodes: PlanNode[];
}
export interface PlanParallel {
  kind: 'Parallel';
  nodes: PlanNode[];
}
export interface PlanFlatten {
  kind: 'Flatten';
  path: (string | number)[];
  node: PlanNode;
}
export interface PlanCondition {
  kind: 'Condition';
  condition: string;
  ifClause?: PlanNode;
  elseClause?: PlanNode;
}
export interface PlanOther {
  kind: 'Defer' | 'Subscription';
}
export type PlanNode = PlanFetch | PlanSequence | PlanParallel | PlanFlatten | PlanCondition | PlanOther;

export interface QueryPlanLike {
  kind: 'QueryPlan';
  node?: PlanNode;
}
