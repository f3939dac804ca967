// ESLint for the page's code (web/) and its unit tests (tests/web/), run by `make test`.
import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["web/vendor/**", "web/config.js"] },
  js.configs.recommended,
  {
    files: ["web/js/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.browser },
  },
  {
    // classic script: it must run before the modules, to put the sign-in token in place
    files: ["web/auth.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "script", globals: globals.browser },
  },
  {
    files: ["tests/web/**/*.js", "eslint.config.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.node },
  },
  {
    rules: {
      eqeqeq: ["error", "always", { null: "ignore" }],
      "no-var": "error",
      "prefer-const": "error",
      "no-unused-vars": ["error", { args: "after-used", caughtErrors: "none" }],
    },
  },
];
