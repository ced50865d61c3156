import type { Reporter, SerializedError, TestModule } from 'vitest/node';

/**
 * Prints the plain closing line CI reads (`tests: N passed, N failed, N skipped`) after
 * vitest's own summary.
 *
 * A failure no test carries is counted as one failure each: a `beforeAll`/`afterAll` that threw
 * (a service that did not start; vitest reports the tests it kept from running as skipped), a
 * file that failed to import or collect, an unhandled error. Counting tests alone printed
 * "0 failed" for a run whose only fault was a missing service.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedError> = []) {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const module of testModules) {
      let failedTests = 0;
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failedTests++;
        else skipped++;
      }
      // The module's own errors (its top-level hooks, its import) and each suite's (its hooks).
      const brokenSuites = [module, ...module.children.allSuites()].filter((suite) => suite.errors().length > 0).length;
      failed += failedTests + brokenSuites;
      if (module.state() === 'failed' && failedTests + brokenSuites === 0) failed++;
    }
    failed += unhandledErrors.length;
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
