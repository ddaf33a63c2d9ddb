//! (to be written)

use roxmltree::Node;

use super::Mapped;
use crate::Ctx;

pub(crate) fn convert_goal(_ctx: &mut Ctx, _statement: Node) -> Mapped {
    Err("not converted yet".into())
}

pub(crate) fn convert_planned(_ctx: &mut Ctx, _statement: Node) -> Mapped {
    Err("not converted yet".into())
}
