/** Loads the captured streams of test/fixtures/protocol (see its README). */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export interface FixtureEntry {
  file: string;
  major: number;
  serverVersion: string;
  session: string;
  commands: string[];
  bytes: number;
  messages: number;
  thinned: boolean;
}

export const FIXTURE_DIR = resolve(import.meta.dirname, '..', 'fixtures', 'protocol');

export function fixtureIndex(): FixtureEntry[] {
  return (JSON.parse(readFileSync(join(FIXTURE_DIR, 'index.json'), 'utf8')) as { fixtures: FixtureEntry[] })
    .fixtures;
}

export function loadFixture(file: string): Buffer {
  return readFileSync(join(FIXTURE_DIR, file));
}
