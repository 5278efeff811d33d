/**
 * Finds the public API's documentation examples. Which blocks count: every ```ts fence inside the JSDoc
 * attached to a declaration that src/index.ts exports (followed through re-exports to the declaring module),
 * to a member of such a class or interface, or the module comment of src/index.ts itself. JSDoc of exported
 * helpers that src/index.ts does not export is internal and not run: those examples may use internal names.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";

export interface Example {
  /** `src/checkpoint/open.ts:42`: the line of the opening fence, relative to the repository. */
  where: string;
  /** The code, with the JSDoc's leading ` * ` stripped. */
  code: string;
}

/** A public function, class, or public method or getter of a public class, and whether its JSDoc shows an example. */
export interface Documented {
  name: string;
  where: string;
  examples: number;
}

export interface PublicDocs {
  /** Every name src/index.ts exports, values and types. */
  exports: Set<string>;
  examples: Example[];
  documented: Documented[];
}

type Parsed = { file: string; source: ts.SourceFile };

const FENCE = /^```ts\s*$/;

/** The last `/** … *\/` comment right before `node`, if any. */
function jsdocOf(source: ts.SourceFile, node: ts.Node): ts.CommentRange | undefined {
  const ranges = ts.getLeadingCommentRanges(source.text, node.getFullStart()) ?? [];
  return ranges.filter((r) => source.text.startsWith("/**", r.pos)).at(-1);
}

/** The ```ts blocks of one JSDoc comment, each with the file line of its fence. */
function blocksIn(parsed: Parsed, root: string, range: ts.CommentRange | undefined): Example[] {
  if (!range) return [];
  const { source, file } = parsed;
  const firstLine = source.getLineAndCharacterOfPosition(range.pos).line;
  const lines = source.text.slice(range.pos, range.end).split("\n").map((l) => l.replace(/^\s*\/?\*+\/?\s?/, "").replace(/\s*\*\/$/, ""));
  const out: Example[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!FENCE.test(lines[i]!)) continue;
    const start = i;
    const code: string[] = [];
    while (++i < lines.length && !/^```\s*$/.test(lines[i]!)) code.push(lines[i]!);
    out.push({ where: `${relative(root, file)}:${firstLine + start + 1}`, code: code.join("\n") + "\n" });
  }
  return out;
}

function parse(file: string, cache: Map<string, Parsed>): Parsed {
  let parsed = cache.get(file);
  if (!parsed) {
    parsed = { file, source: ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true) };
    cache.set(file, parsed);
  }
  return parsed;
}

function declaredName(node: ts.Statement): string[] {
  if (ts.isVariableStatement(node)) return node.declarationList.declarations.map((d) => d.name.getText());
  const name = (node as ts.DeclarationStatement).name;
  return name && ts.isIdentifier(name) ? [name.text] : [];
}

const isExported = (node: ts.Node) =>
  ts.canHaveModifiers(node) && (ts.getModifiers(node) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword);

/**
 * The statements declaring `name` in `file`, following `export { name } from "./other.ts"` and
 * `import { name } from "./other.ts"; export { name };`.
 */
function declarations(file: string, name: string, cache: Map<string, Parsed>): Array<{ parsed: Parsed; node: ts.Statement }> {
  const parsed = parse(file, cache);
  const follow = (specifier: ts.Expression, imported: string) =>
    declarations(resolve(dirname(file), (specifier as ts.StringLiteral).text), imported, cache);
  let local = name;
  for (const stmt of parsed.source.statements) {
    if (!ts.isExportDeclaration(stmt) || !stmt.exportClause || !ts.isNamedExports(stmt.exportClause)) continue;
    const spec = stmt.exportClause.elements.find((e) => e.name.text === name);
    if (!spec) continue;
    if (stmt.moduleSpecifier) return follow(stmt.moduleSpecifier, (spec.propertyName ?? spec.name).text);
    local = (spec.propertyName ?? spec.name).text;
  }
  for (const stmt of parsed.source.statements) {
    const bindings = ts.isImportDeclaration(stmt) ? stmt.importClause?.namedBindings : undefined;
    const spec = bindings && ts.isNamedImports(bindings) ? bindings.elements.find((e) => e.name.text === local) : undefined;
    if (spec) return follow((stmt as ts.ImportDeclaration).moduleSpecifier, (spec.propertyName ?? spec.name).text);
  }
  const found = parsed.source.statements.filter((s) => (local !== name || isExported(s)) && declaredName(s).includes(local));
  if (found.length === 0) throw new Error(`${file} exports no ${name}`);
  return found.map((node) => ({ parsed, node }));
}

/** Methods and getters a caller of the class may use: not `#private`, `private`, the constructor or `[Symbol.…]`. */
function isPublicMember(m: ts.ClassElement | ts.TypeElement): boolean {
  if (!m.name || !(ts.isIdentifier(m.name) || ts.isStringLiteral(m.name))) return false;
  const modifiers = ts.canHaveModifiers(m) ? ts.getModifiers(m) ?? [] : [];
  return !modifiers.some((x) => x.kind === ts.SyntaxKind.PrivateKeyword || x.kind === ts.SyntaxKind.ProtectedKeyword);
}

/** Everything the docs test needs to know about the public API rooted at `index`. */
export function publicDocs(index: string, root: string): PublicDocs {
  const cache = new Map<string, Parsed>();
  const indexParsed = parse(index, cache);
  const exports = new Set<string>();
  const examples: Example[] = [];
  const documented: Documented[] = [];
  const first = indexParsed.source.statements[0];
  if (first) examples.push(...blocksIn(indexParsed, root, jsdocOf(indexParsed.source, first)));
  for (const stmt of indexParsed.source.statements) {
    if (!ts.isExportDeclaration(stmt) || !stmt.moduleSpecifier || !stmt.exportClause || !ts.isNamedExports(stmt.exportClause)) continue;
    const target = resolve(dirname(index), (stmt.moduleSpecifier as ts.StringLiteral).text);
    for (const spec of stmt.exportClause.elements) {
      const name = spec.name.text;
      exports.add(name);
      for (const { parsed, node } of declarations(target, (spec.propertyName ?? spec.name).text, cache)) {
        const own = blocksIn(parsed, root, jsdocOf(parsed.source, node));
        examples.push(...own);
        const where = (n: ts.Node) => `${relative(root, parsed.file)}:${parsed.source.getLineAndCharacterOfPosition(n.getStart()).line + 1}`;
        if (ts.isFunctionDeclaration(node) || ts.isClassDeclaration(node)) documented.push({ name, where: where(node), examples: own.length });
        if (!ts.isClassDeclaration(node) && !ts.isInterfaceDeclaration(node)) continue;
        const members: ReadonlyArray<ts.ClassElement | ts.TypeElement> = node.members;
        for (const m of members.filter(isPublicMember)) {
          const blocks = blocksIn(parsed, root, jsdocOf(parsed.source, m));
          examples.push(...blocks);
          if (ts.isClassDeclaration(node) && (ts.isMethodDeclaration(m) || ts.isGetAccessorDeclaration(m))) {
            documented.push({ name: `${name}.${m.name!.getText()}`, where: where(m), examples: blocks.length });
          }
        }
      }
    }
  }
  // A declaration exported under two names, or overloads, would list a block twice.
  const unique = [...new Map(examples.map((e) => [e.where, e])).values()];
  const byName = [...new Map(documented.map((d) => [d.name, d])).values()];
  return { exports, examples: unique, documented: byName };
}

/** The module names an example imports from (static `import … from`, bare `import "…"`, dynamic `import("…")`). */
export function importedModules(code: string): string[] {
  return [...code.matchAll(/\bimport\s*(?:[^"'()]*?\bfrom\s*)?\(?\s*["']([^"']+)["']/g)].map((m) => m[1]!);
}

/** The names an example imports from "tensormap", `type` specifiers included. */
export function importedNames(code: string): string[] {
  const lists = code.matchAll(/\bimport\s+(?:type\s+)?\{([^}]*)\}\s*from\s*["']tensormap["']/g);
  return [...lists].flatMap((m) =>
    m[1]!.split(",").map((s) => s.trim().replace(/^type\s+/, "").split(/\s+as\s+/)[0]!).filter(Boolean),
  );
}

/**
 * Type-checks the examples against the public API, as a user's strict TypeScript would (Node's globals only:
 * an example that needs `Deno` or `Bun` does not run everywhere). Returns one line per error, at the
 * example's line in its source file.
 */
export function typeErrors(examples: readonly Example[], index: string, root: string, dir: string): string[] {
  const files = examples.map((e, i) => {
    const file = join(dir, `example-${i}.ts`);
    writeFileSync(file, e.code);
    return file;
  });
  const program = ts.createProgram(files, {
    target: ts.ScriptTarget.ES2022,
    lib: ["lib.es2024.d.ts", "lib.esnext.disposable.d.ts"],
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    allowImportingTsExtensions: true,
    strict: true,
    skipLibCheck: true,
    noEmit: true,
    types: ["node"],
    typeRoots: [join(root, "node_modules", "@types")],
    paths: { tensormap: [index] },
  });
  return files.flatMap((file, i) =>
    ts.getPreEmitDiagnostics(program, program.getSourceFile(file)).map((d) => {
      const [path, fence] = examples[i]!.where.split(":");
      const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : 0;
      return `${path}:${Number(fence) + 1 + line}: ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`;
    }),
  );
}
