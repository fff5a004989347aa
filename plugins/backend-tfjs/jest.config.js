module.exports = { ...require('../../jest.preset.js'), displayName: 'backend-tfjs' };
