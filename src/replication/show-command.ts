/**
 * Text of SHOW on a replication connection (repl_gram.y `show: K_SHOW var_name`). A setting name
 * is a dotted identifier; anything else is refused before sending.
 */
import { ConfigError } from '../errors';

const SETTING_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

export function showCommand(name: string): string {
  if (typeof name !== 'string' || name.length > 200 || !SETTING_NAME_RE.test(name)) {
    throw new ConfigError(
      'CONFIG_INVALID_IDENTIFIER',
      `invalid setting name ${JSON.stringify(String(name).slice(0, 80))}`,
    );
  }
  return `SHOW ${name}`;
}
