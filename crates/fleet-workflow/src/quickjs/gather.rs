//! `gather()`, what the prelude's `parallel()` and `pipeline()` run on, as a native loop.
//!
//! `gather` starts `start(i)` for every item in order and resolves with the results in order
//! once all have settled. An `agent()` promise handed to it takes a [`Slot`]: when the call
//! settles, the engine puts its result straight where it goes (the results, or a pipeline's
//! next stage) without a promise reaction in between. Any other promise or thenable goes
//! through the prelude's `attach`, which reports back through `h.slot` when it settles; a
//! plain value goes on at once. A failure (a start or stage that throws, a promise that
//! rejects) becomes `failed(i, error, stage)`, which logs it and gives the slot's value.

use rquickjs::{Array, Ctx, Function, Persistent, Value};

use super::State;

/// Where a settled value goes: item `index` of gather `gather`, as the result of its stage
/// `stage` (a pipeline's stage; 0 for `parallel()`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) gather: u32,
    pub(super) index: u32,
    pub(super) stage: u32,
}

/// A gather waiting for results.
pub(super) struct Gather {
    left: u32,
    results: Persistent<Array<'static>>,
    resolve: Persistent<Function<'static>>,
    failed: Persistent<Function<'static>>,
    attach: Persistent<Function<'static>>,
    /// A pipeline's items, its stages and how many there are (`None`: `parallel()`).
    pipeline: Option<Pipeline>,
}

struct Pipeline {
    items: Persistent<Array<'static>>,
    stages: Persistent<Array<'static>>,
    count: u32,
}

/// A JS value's identity: for an object, its address. Read through `Value`'s `Hash`, which
/// hashes the value's tag and then its bits.
pub(super) fn identity(value: &Value<'_>) -> u64 {
    #[derive(Default)]
    struct Bits(u64);
    impl std::hash::Hasher for Bits {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = self.0.rotate_left(8) ^ u64::from(b);
            }
        }
        fn write_i32(&mut self, _tag: i32) {}
        fn write_u64(&mut self, bits: u64) {
            self.0 = bits;
        }
    }
    let mut bits = Bits::default();
    std::hash::Hash::hash(value, &mut bits);
    bits.0
}

/// `h.gather(n, start, failed, attach, items?, stages?)`: see the module.
pub(super) fn gather<'js>(
    state: &State,
    ctx: &Ctx<'js>,
    n: u32,
    start: &Function<'js>,
    handlers: (Function<'js>, Function<'js>),
    pipeline: Option<(Array<'js>, Array<'js>)>,
) -> rquickjs::Result<Value<'js>> {
    let (failed, attach) = handlers;
    let (promise, resolve, _reject) = ctx.promise()?;
    let results = Array::new(ctx.clone())?;
    // Filled in order first, so that QuickJS keeps it a dense array.
    for i in 0..n as usize {
        results.set(i, rquickjs::Undefined)?;
    }
    if n == 0 {
        resolve.call::<_, ()>((results,))?;
        return Ok(promise.into_value());
    }
    let id = state.next_gather.get();
    state.next_gather.set(id.wrapping_add(1));
    let pipeline = pipeline.map(|(items, stages)| Pipeline {
        count: u32::try_from(stages.len()).unwrap_or(u32::MAX),
        items: Persistent::save(ctx, items),
        stages: Persistent::save(ctx, stages),
    });
    state.gathers.borrow_mut().insert(
        id,
        Gather {
            left: n,
            results: Persistent::save(ctx, results),
            resolve: Persistent::save(ctx, resolve),
            failed: Persistent::save(ctx, failed),
            attach: Persistent::save(ctx, attach),
            pipeline,
        },
    );
    let started = (0..n).try_for_each(|index| {
        let slot = Slot {
            gather: id,
            index,
            stage: 0,
        };
        let outcome = state.call(ctx, start, (index,))?;
        state.place(ctx, slot, outcome)
    });
    if let Err(e) = started {
        state.gathers.borrow_mut().remove(&id);
        return Err(e);
    }
    Ok(promise.into_value())
}

type Outcome<'js> = Result<Value<'js>, Value<'js>>;

impl State {
    /// Calls `f` as a start or a stage: what it returned, or what it threw. An interrupt (the
    /// CPU limit, a stop) or the heap limit is not the item's failure, and is thrown on.
    fn call<'js>(
        &self,
        ctx: &Ctx<'js>,
        f: &Function<'js>,
        args: impl rquickjs::function::IntoArgs<'js>,
    ) -> rquickjs::Result<Outcome<'js>> {
        match f.call::<_, Value>(args) {
            Ok(value) => Ok(Ok(value)),
            Err(rquickjs::Error::Exception) => {
                let error = ctx.catch();
                if self.guards.fatal().is_some() {
                    return Err(ctx.throw(error));
                }
                Ok(Err(error))
            }
            Err(e) => Err(e),
        }
    }

    /// Takes what a start or stage gave for `slot`: a promise or thenable is waited for (an
    /// `agent()` promise takes the slot; another goes through `attach`), anything else goes
    /// on at once.
    fn place<'js>(
        &self,
        ctx: &Ctx<'js>,
        slot: Slot,
        outcome: Outcome<'js>,
    ) -> rquickjs::Result<()> {
        match outcome {
            Ok(value) if value.is_object() || value.is_function() => {
                if self.take_slot(&value, slot) {
                    return Ok(());
                }
                let attach = self
                    .gathers
                    .borrow()
                    .get(&slot.gather)
                    .map(|g| g.attach.clone());
                match attach {
                    Some(attach) => attach.restore(ctx)?.call::<_, ()>((
                        value,
                        slot.gather,
                        slot.index,
                        slot.stage,
                    )),
                    None => Ok(()),
                }
            }
            outcome => self.deliver(ctx, slot, outcome),
        }
    }

    /// Gives the result of the host promise `value` (if it is one, not yet settled and not
    /// taken by another gather) to `slot`; returns whether it did.
    pub(super) fn take_slot(&self, value: &Value<'_>, slot: Slot) -> bool {
        let Some(id) = self.by_object.borrow().get(&identity(value)).copied() else {
            return false;
        };
        match self.pending.borrow_mut().get_mut(&id) {
            Some(pending) if pending.slot.is_none() => {
                pending.slot = Some(slot);
                true
            }
            _ => false,
        }
    }

    /// `slot` settled with `outcome`: a pipeline's item goes on to its next stage (unless it
    /// is null or that was the last), anything else fills its place in the results; a failure
    /// is what `failed` makes of it. A gather that is gone takes nothing.
    pub(super) fn deliver<'js>(
        &self,
        ctx: &Ctx<'js>,
        mut slot: Slot,
        mut outcome: Outcome<'js>,
    ) -> rquickjs::Result<()> {
        // A loop, not recursion: stages that return plain values go on at once.
        loop {
            let (failed, next) = {
                let gathers = self.gathers.borrow();
                let Some(gather) = gathers.get(&slot.gather) else {
                    return Ok(());
                };
                let next = gather
                    .pipeline
                    .as_ref()
                    .filter(|p| slot.stage + 1 < p.count)
                    .map(|p| (p.items.clone(), p.stages.clone()));
                (gather.failed.clone(), next)
            };
            let value = match outcome {
                Ok(value) => value,
                Err(error) => {
                    let value = failed.restore(ctx)?.call((slot.index, error, slot.stage))?;
                    return self.fill(ctx, slot, value);
                }
            };
            let Some((items, stages)) = next.filter(|_| !value.is_null()) else {
                return self.fill(ctx, slot, value);
            };
            slot.stage += 1;
            let item: Value = items.restore(ctx)?.get(slot.index as usize)?;
            let stage: Function = stages.restore(ctx)?.get(slot.stage as usize)?;
            match self.call(ctx, &stage, (value, item, slot.index))? {
                Ok(value) if value.is_object() || value.is_function() => {
                    return self.place(ctx, slot, Ok(value));
                }
                next => outcome = next,
            }
        }
    }

    /// Puts `value` in `slot`'s place of the results, and resolves the gather once every
    /// place is filled.
    fn fill<'js>(&self, ctx: &Ctx<'js>, slot: Slot, value: Value<'js>) -> rquickjs::Result<()> {
        let (results, resolve) = {
            let mut gathers = self.gathers.borrow_mut();
            let Some(gather) = gathers.get_mut(&slot.gather) else {
                return Ok(());
            };
            gather.left = gather.left.saturating_sub(1);
            if gather.left > 0 {
                (gather.results.clone(), None)
            } else {
                let Some(done) = gathers.remove(&slot.gather) else {
                    return Ok(());
                };
                (done.results, Some(done.resolve))
            }
        };
        let results = results.restore(ctx)?;
        results.set(slot.index as usize, value)?;
        if let Some(resolve) = resolve {
            resolve.restore(ctx)?.call::<_, ()>((results,))?;
        }
        Ok(())
    }
}
