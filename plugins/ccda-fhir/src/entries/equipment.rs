//! (to be written)

use roxmltree::Node;

use super::Mapped;
use crate::Ctx;

pub(crate) fn convert_device(_ctx: &mut Ctx, _statement: Node) -> Mapped {
    Err("not converted yet".into())
}

pub(crate) fn convert_coverage(_ctx: &mut Ctx, _statement: Node) -> Mapped {
    Err("not converted yet".into())
}

pub(crate) fn convert_care_team(_ctx: &mut Ctx, _statement: Node) -> Mapped {
    Err("not converted yet".into())
}
