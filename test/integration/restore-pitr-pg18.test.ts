/** PITR on PostgreSQL 18, S3 repository (see restore-pitr-scenario.ts). */
import { describe } from 'vitest';
import { pitrScenario } from './restore-pitr-scenario';

describe('point-in-time recovery, PG18, s3 repository', () => pitrScenario(18, 's3'));
