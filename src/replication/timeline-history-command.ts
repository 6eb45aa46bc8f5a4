/** Text of TIMELINE_HISTORY tli (walsender.c SendTimeLineHistory; tli must be > 0). */
import { assertTimeline } from '../lsn';

export function timelineHistoryCommand(timeline: number): string {
  assertTimeline(timeline);
  return `TIMELINE_HISTORY ${timeline}`;
}
