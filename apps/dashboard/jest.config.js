module.exports = { ...require('../../jest.preset.js'), displayName: 'dashboard', testTimeout: 300000 };
