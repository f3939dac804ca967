// The REST API client: every call the page makes, with errors as ApiError {status, code, message}.

export class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} message @param {object} [details] */
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    /** @type {Record<string, any>} extra fields of the error body (a 409 says which version is current) */
    this.details = details;
  }
}

/**
 * @typedef {{apiUrl: string, apiKey?: string, idToken?: string}} ApiConfig
 * @typedef {{status?: string, reviewer?: string, herniated?: string, needs_review?: string,
 *   since?: string, until?: string, sort?: string, limit?: number, cursor?: string}} ListParams
 */

/** Query string for the worklist (empty values left out). @param {ListParams} params */
export function listQuery(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  return q.toString();
}

/** @param {ApiConfig} config */
export function createApi(config) {
  /** @param {string} method @param {string} path @param {object} [body] */
  async function call(method, path, body) {
    /** @type {Record<string, string>} */
    const headers = { "Content-Type": "application/json" };
    if (config.apiKey) headers["x-api-key"] = config.apiKey;
    if (config.idToken) headers.Authorization = config.idToken; // set by auth.js in AWS
    let resp;
    try {
      resp = await fetch(config.apiUrl + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new ApiError(0, "NETWORK", "The API cannot be reached. Check your connection and try again.");
    }
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const { error_code: code, message, ...details } = data;
      throw new ApiError(resp.status, code || `HTTP_${resp.status}`, message || resp.statusText, details);
    }
    return data;
  }
  return {
    /** @param {ListParams} params */
    listStudies: (params) => call("GET", `/studies?${listQuery(params)}`),
    /** @param {string} id */
    getStudy: (id) => call("GET", `/studies/${id}`),
    /** @param {{filename: string, content_type: string, size: number}} body */
    createStudy: (body) => call("POST", "/studies", body),
    /** @param {string} id @param {{discs: object[], other_discs: object[]}} payload @param {number} baseVersion */
    saveCorrections: (id, payload, baseVersion) => call("POST", `/studies/${id}/corrections`, { ...payload, base_version: baseVersion }),
    /** @param {string} id @param {number} baseVersion */
    accept: (id, baseVersion) => call("POST", `/studies/${id}/accept`, { base_version: baseVersion }),
    currentModel: () => call("GET", "/models/current"),
  };
}
