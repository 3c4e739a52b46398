import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

/** The parts of an OpenAPI 3.1 document the contract check reads. */
export interface OpenApiDoc {
  paths: Record<string, Record<string, { responses: Record<string, OpenApiResponse> }>>;
  components?: { schemas?: Record<string, unknown> };
}
interface OpenApiResponse {
  headers?: Record<string, { required?: boolean; schema?: unknown }>;
  content?: Record<string, { schema?: Record<string, unknown> }>;
}

const DOC_ID = 'https://gateway.example/openapi.json';
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;

/**
 * Validates answers against an OpenAPI document: the status must be documented for the operation,
 * the content type must be one the document lists, required headers present, and a JSON body (or
 * each SSE event's data) valid against the documented schema (ajv, JSON Schema 2020-12).
 */
export class ContractChecker {
  readonly #doc: OpenApiDoc;
  readonly #ajv: Ajv2020;
  readonly #compiled = new Map<string, ValidateFunction>();
  /** `METHOD /template` of every operation an answer was checked for. */
  readonly covered = new Set<string>();

  constructor(doc: OpenApiDoc) {
    this.#doc = doc;
    this.#ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(this.#ajv);
    // Refs inside the document (#/components/schemas/X) resolve against the document itself.
    this.#ajv.addSchema({ $id: DOC_ID, components: doc.components ?? {} });
  }

  /** Every operation of the document as `METHOD /template`. */
  operations(): string[] {
    return Object.entries(this.#doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
  }

  #validator(schema: Record<string, unknown>): ValidateFunction {
    const key = JSON.stringify(schema);
    let v = this.#compiled.get(key);
    if (!v) {
      const rebased = JSON.parse(key.replaceAll('"#/components/', `"${DOC_ID}#/components/`)) as Record<string, unknown>;
      v = this.#ajv.compile(rebased);
      this.#compiled.set(key, v);
    }
    return v;
  }

  #response(method: string, template: string, status: number): OpenApiResponse {
    const op = this.#doc.paths[template]?.[method.toLowerCase()];
    if (!op) throw new Error(`${method} ${template} is not in the document`);
    const r = op.responses[String(status)];
    if (!r) throw new Error(`${method} ${template}: status ${status} is not documented (documented: ${Object.keys(op.responses).join(', ')})`);
    this.covered.add(`${method.toUpperCase()} ${template}`);
    return r;
  }

  /** Checks one HTTP answer; returns the problems found (empty = conforms). */
  check(method: string, template: string, answer: { status: number; headers: Headers; body: string }): string[] {
    const errors: string[] = [];
    const where = `${method} ${template} ${answer.status}`;
    let r: OpenApiResponse;
    try {
      r = this.#response(method, template, answer.status);
    } catch (err) {
      return [(err as Error).message];
    }
    for (const [name, h] of Object.entries(r.headers ?? {})) {
      if (h.required && answer.headers.get(name) === null) errors.push(`${where}: required header ${name} missing`);
    }
    if (!r.content) {
      if (answer.body.length > 0) errors.push(`${where}: documented without a body, got ${answer.body.length} bytes`);
      return errors;
    }
    const type = (answer.headers.get('content-type') ?? '').split(';')[0]!.trim();
    const media = r.content[type] ?? r.content['*/*'];
    if (!media) {
      errors.push(`${where}: content type ${type} not documented (${Object.keys(r.content).join(', ')})`);
      return errors;
    }
    if (type.endsWith('json') && media.schema) {
      const validate = this.#validator(media.schema);
      if (!validate(JSON.parse(answer.body))) errors.push(`${where}: body ${this.#ajv.errorsText(validate.errors)}`);
    }
    return errors;
  }

  /** Checks an SSE answer: status, content type, and each event's data against the stream's `x-sse-data` schema. */
  checkSse(template: string, answer: { status: number; contentType: string | null; events: Array<{ data: unknown }> }): string[] {
    const where = `GET ${template} ${answer.status}`;
    let r: OpenApiResponse;
    try {
      r = this.#response('GET', template, answer.status);
    } catch (err) {
      return [(err as Error).message];
    }
    const media = r.content?.['text/event-stream'];
    if (!media || answer.contentType?.split(';')[0] !== 'text/event-stream') return [`${where}: not a documented event stream (${answer.contentType})`];
    const data = media.schema?.['x-sse-data'] as Record<string, unknown> | undefined;
    if (!data) return [`${where}: the stream names no event schema`];
    const validate = this.#validator(data);
    return answer.events.flatMap((e, i) => (validate(e.data) ? [] : [`${where}: event ${i} ${this.#ajv.errorsText(validate.errors)}`]));
  }
}

/**
 * The shape rules over any JSON the API answers: no `jobId` (the id is `id`), no `attempt` (it is
 * `attempts`), no `nextCursor`/`entries`/`jobs` (pages are `{ items, next }`), and times as ISO
 * strings, never epoch numbers. Downstream data (`result.headers`) is not ours and is skipped.
 */
export function shapeViolations(value: unknown, path = '$'): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => shapeViolations(v, `${path}[${i}]`));
  if (!value || typeof value !== 'object') return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const here = `${path}.${k}`;
    if (['jobId', 'attempt', 'nextCursor', 'entries', 'jobs'].includes(k)) out.push(`${here}: forbidden name`);
    if ((/At$/.test(k) || k === 'at') && v !== null && !(typeof v === 'string' && !Number.isNaN(Date.parse(v)) && /T.*Z$/.test(v))) out.push(`${here}: not an ISO time (${JSON.stringify(v)})`);
    if (k === 'headers' && path.endsWith('.result')) continue;
    out.push(...shapeViolations(v, here));
  }
  return out;
}
