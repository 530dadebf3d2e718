// Loaded by mocha before every spec file (see .mocharc.json).
import sinon from 'sinon';

export const mochaHooks = {
  afterEach(): void {
    sinon.restore();
  },
};
