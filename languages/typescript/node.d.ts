// The node.js globals a TypeScript program run by opd may use. Debian packages no @types/node,
// so tsc is given these declarations instead (loosely typed: enough to compile, not to check).
declare var process: any;
declare var Buffer: any;
declare var module: any;
declare var exports: any;
declare var __dirname: string;
declare var __filename: string;
declare function require(id: string): any;
