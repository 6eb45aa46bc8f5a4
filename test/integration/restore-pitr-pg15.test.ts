/** PITR on PostgreSQL 15, fs repository (see restore-pitr-scenario.ts). */
import { describe } from 'vitest';
import { pitrScenario } from './restore-pitr-scenario';

describe('point-in-time recovery, PG15, fs repository', () => pitrScenario(15, 'fs'));
