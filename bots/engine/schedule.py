"""When the driver looks at each bot (part of ``Driver``; driver thread): the due queue (``due.py``) the tick pops,
what puts a runner in it (its next due time after a check, a cycle handed back, a depth read that landed,
the housekeeping pass as a safety net), and the pushed moves that bring a bot's check forward (``by_pair``).
"""

from __future__ import annotations

from bots.engine.driver_state import DriverState
from bots.engine.runner import Runner


class ScheduleMixin(DriverState):
    """The due queue's users on the driver thread (part of ``Driver``)."""

    def _pop_due(self, now: float) -> list[Runner]:
        """The runners to check now: those whose entry in the due queue came up and that are due (a dropped one
        is forgotten, a busy one waits for its cycle, a depth wait that is not over is scheduled again)."""
        due: list[Runner] = []
        dropped: list[int] = []
        queue = self.due_queue
        for pk in queue.pop_due(now):  # only the bots scheduled by now (due.py), not a pass over them all
            runner = self.runners.get(pk)
            if runner is None:
                continue
            if runner.dropped:
                dropped.append(pk)
                continue
            if runner.busy:  # scheduled again when the driver takes it back (``_take_back``)
                continue
            if runner.wait_until:  # its check waits (a depth read: ``_take_depth`` ends the wait; its account view)
                if now < runner.wait_until:
                    queue.schedule(pk, runner.wait_until)
                    continue
                runner.wait_until = 0.0
            if runner.wake_after:  # a move heard during its cycle (only this thread sets/clears the flag)
                runner.wake_after = False
                if runner.next_due > now:
                    runner.next_due, runner.woken = now, True
            if runner.next_due <= now:
                due.append(runner)
            else:
                queue.schedule(pk, runner.next_due)
        for pk in dropped:
            self.runners.pop(pk, None)
        if dropped:
            self.bots_read = None  # a fenced bot that is still cycling comes back at the next read
        return due

    def _bring_traded(self, now: float) -> None:
        """Bots whose orders the pushes showed trading (the feeder's ``traded_bots``, once it applied them to the
        account views) are looked at now: the check sees the fill and makes it a fill sync at once, not at the
        bot's next interval (a fill moves no mid by itself when others' quotes stay at the top)."""
        while self.traded_bots:
            runner = self.runners.get(self.traded_bots.popleft())
            if runner is None or runner.dropped:
                continue
            if runner.busy:
                runner.wake_after = True  # its cycle may have decided on the view before this fill
            elif runner.next_due > now:
                self.bring_forward(runner, now)

    def bring_forward(self, runner: Runner, at: float = 0.0) -> None:
        """Make a runner due at ``at`` (tests and tools; the driver thread's own wakes go through the queue
        as well): its next tick looks at it."""
        runner.next_due = at
        self.due_queue.schedule(runner.bot_id, at)

    def _schedule(self, runner: Runner, now: float) -> None:
        """Put a runner the driver holds (not busy) in the due queue at the time it must next be looked at."""
        if runner.busy:
            return  # its cycle hands it back (``_take_back`` schedules it then)
        if runner.dropped or runner.wake_after:
            self.due_queue.schedule(runner.bot_id, now)  # (forgotten / brought forward at the next tick)
        elif runner.wait_until:
            self.due_queue.schedule(runner.bot_id, runner.wait_until)
        else:
            self.due_queue.schedule(runner.bot_id, runner.next_due)

    def _apply_moves(self, now: float) -> None:
        """Pushed mids: bots whose quotes are a quarter of their tolerance off the new mid run now (only the
        bots quoting a moved pair are looked at: ``by_pair``)."""
        if not self.moved:
            return
        latest: dict[tuple[str, str], float] = {}
        while self.moved:
            venue, pair, mid = self.moved.popleft()
            latest[(venue, pair)] = mid
        seen: set[int] = set()
        for moved_key in latest:
            for pk, runner in self.by_pair.get(moved_key, {}).items():
                if pk in seen or runner.engine is None or self.runners.get(pk) is not runner:
                    continue
                seen.add(pk)
                tolerance = runner.engine.config.order_settings.order_refresh_tolerance_bps / 4e4
                for key, quoted in runner.quoted_mid.items():
                    moved_to = latest.get(key)
                    if moved_to is None:
                        continue
                    if runner.busy:  # its running cycle may have decided on the book before this move
                        runner.wake_after = True
                        break
                    if abs(moved_to - quoted) > tolerance * quoted:
                        if runner.next_due > now:
                            runner.next_due, runner.woken = now, True
                            self.due_queue.schedule(pk, now)
                        break

    def _index_quoted(self, runner: Runner) -> None:
        """Keep ``by_pair`` (venue, pair) -> the bots whose quotes sit on it (their ``quoted_mid``), after a
        cycle handed the runner back (the housekeeping rebuilds it whole every second)."""
        keys = () if runner.dropped else tuple(runner.quoted_mid)
        if keys == runner.indexed:
            return
        for key in runner.indexed:
            bots = self.by_pair.get(key)
            if bots is not None:
                bots.pop(runner.bot_id, None)
        for key in keys:
            self.by_pair.setdefault(key, {})[runner.bot_id] = runner
        runner.indexed = keys
