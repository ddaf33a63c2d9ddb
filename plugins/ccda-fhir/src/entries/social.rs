//! (to be written)

use roxmltree::Node;

use super::Mapped;
use crate::Ctx;

pub(crate) fn convert(_ctx: &mut Ctx, _statement: Node) -> Mapped {
    Err("not converted yet".into())
}

pub(crate) fn convert_status(_ctx: &mut Ctx, _statement: Node, _kind: crate::Kind) -> Mapped {
    Err("not converted yet".into())
}
