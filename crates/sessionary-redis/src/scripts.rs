//! The Lua scripts, each with the shared library (`lua/lib.lua`) in front.
//!
//! `redis::Script` sends `EVALSHA` and falls back to `SCRIPT LOAD` + `EVALSHA`
//! on `NOSCRIPT`, so after a server restart (scripts are not persisted) the
//! first call reloads the script by itself.

use redis::Script;

const LIB: &str = include_str!("lua/lib.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{LIB}\n{body}"))
}

/// Every script the store runs, compiled (hashed) once.
pub(crate) struct Scripts {
    pub(crate) load: Script,
    pub(crate) get: Script,
    pub(crate) create: Script,
    pub(crate) update: Script,
    pub(crate) touch: Script,
    pub(crate) end: Script,
    pub(crate) end_user: Script,
    pub(crate) list_user: Script,
    pub(crate) counter: Script,
    pub(crate) sweep: Script,
    pub(crate) take_restorable: Script,
    pub(crate) set_user_data: Script,
    pub(crate) create_family: Script,
    pub(crate) refresh: Script,
    pub(crate) revoke_family: Script,
    pub(crate) revoke_session_families: Script,
    pub(crate) sweep_families: Script,
    pub(crate) append_audit: Script,
    pub(crate) sweep_audit: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            load: script(include_str!("lua/load.lua")),
            get: script(include_str!("lua/get.lua")),
            create: script(include_str!("lua/create.lua")),
            update: script(include_str!("lua/update.lua")),
            touch: script(include_str!("lua/touch.lua")),
            end: script(include_str!("lua/end.lua")),
            end_user: script(include_str!("lua/end_user.lua")),
            list_user: script(include_str!("lua/list_user.lua")),
            counter: script(include_str!("lua/counter.lua")),
            sweep: script(include_str!("lua/sweep.lua")),
            take_restorable: script(include_str!("lua/take_restorable.lua")),
            set_user_data: script(include_str!("lua/set_user_data.lua")),
            create_family: script(include_str!("lua/create_family.lua")),
            refresh: script(include_str!("lua/refresh.lua")),
            revoke_family: script(include_str!("lua/revoke_family.lua")),
            revoke_session_families: script(include_str!("lua/revoke_session_families.lua")),
            sweep_families: script(include_str!("lua/sweep_families.lua")),
            append_audit: script(include_str!("lua/append_audit.lua")),
            sweep_audit: script(include_str!("lua/sweep_audit.lua")),
        }
    }
}
