/**
 * Part-size planning for multipart uploads. S3 allows at most 10,000 parts of 5 MiB to 5 GiB each
 * (the last part may be smaller). The plan is fixed before the first byte so that the limit can
 * never be reached mid-stream:
 * - exact length known: one size, large enough that length / size <= 10,000;
 * - only an estimate (`sizeHint`): sized so the estimate fits in 5,000 parts, then the size doubles
 *   every 1,000 parts, so a stream up to ~13x larger than its estimate still fits;
 * - nothing known: the configured size for 1,000 parts, then doubling every 1,000 parts
 *   (16 MiB parts reach ~16 TiB, beyond S3's 5 TiB object limit). Memory grows with the part size
 *   only for such very large streams; give a `sizeHint` to keep it flat.
 */
export const MIN_PART_SIZE = 5 * 1024 * 1024;
export const MAX_PART_SIZE = 5 * 1024 * 1024 * 1024;
export const MAX_PARTS = 10_000;
const MIB = 1024 * 1024;
const GROWTH_BLOCK = 1_000;

export interface PartPlan {
  /** Size of part 1 (and of every part before growth starts). */
  baseSize: number;
  /** Parts numbered up to this one have `baseSize`; after it the size doubles every 1,000 parts. */
  growthStartsAfter: number;
}

function roundUpToMiB(n: number): number {
  return Math.ceil(n / MIB) * MIB;
}

export function planParts(configuredPartSize: number, exactLength?: number, sizeHint?: number): PartPlan {
  const configured = Math.max(MIN_PART_SIZE, configuredPartSize);
  if (exactLength !== undefined) {
    return {
      baseSize: Math.min(
        MAX_PART_SIZE,
        Math.max(configured, roundUpToMiB(Math.ceil(exactLength / MAX_PARTS))),
      ),
      growthStartsAfter: MAX_PARTS,
    };
  }
  if (sizeHint !== undefined && sizeHint > 0) {
    return {
      baseSize: Math.min(
        MAX_PART_SIZE,
        Math.max(configured, roundUpToMiB(Math.ceil(sizeHint / (MAX_PARTS / 2)))),
      ),
      growthStartsAfter: MAX_PARTS / 2,
    };
  }
  return { baseSize: Math.min(MAX_PART_SIZE, configured), growthStartsAfter: GROWTH_BLOCK };
}

/** Size of part `partNumber` (1-based) under a plan. */
export function partSizeAt(plan: PartPlan, partNumber: number): number {
  if (partNumber <= plan.growthStartsAfter) return plan.baseSize;
  const doublings = Math.floor((partNumber - plan.growthStartsAfter - 1) / GROWTH_BLOCK) + 1;
  return Math.min(MAX_PART_SIZE, plan.baseSize * 2 ** doublings);
}

/** The largest object a plan can carry within 10,000 parts. */
export function planCapacity(plan: PartPlan): number {
  let total = 0;
  for (let n = 1; n <= MAX_PARTS; n += 1) total += partSizeAt(plan, n);
  return total;
}
