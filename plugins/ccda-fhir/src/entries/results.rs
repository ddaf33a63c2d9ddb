//! (to be written)

use roxmltree::Node;

use super::Mapped;
use crate::Ctx;

pub(crate) fn convert_result(_ctx: &mut Ctx, _statement: Node) -> Mapped {
    Err("not converted yet".into())
}

pub(crate) fn convert_vitals(_ctx: &mut Ctx, _statement: Node) -> Mapped {
    Err("not converted yet".into())
}
