"""Strategic merge patch, driven by the OpenAPI documents: a list whose
schema says x-kubernetes-patch-strategy: merge is merged item by item on
its x-kubernetes-patch-merge-key (containers by name, conditions by type,
...), every other list is replaced, maps merge as in a JSON merge patch.
Directives: $patch: replace / delete (in a map or a list item), and
$setElementOrder/... (ignored: the order is kept)."""
import copy


def strategic_merge(schemas, target, patch, sch, base):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get('$patch') == 'replace':
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != '$patch'}
    if not isinstance(target, dict):
        target = {}
    props, addl = {}, None
    if sch is not None:
        sch, base = schemas.resolve(sch, base)
        props, _, addl = schemas.view(sch, base)
    for k, v in patch.items():
        if k.startswith('$'):
            continue
        if v is None:
            target.pop(k, None)
            continue
        psch, pbase = props.get(k) or (addl if addl and isinstance(addl[0], dict) else (None, base))
        if psch is not None:
            psch, pbase = schemas.resolve(psch, pbase)
        if isinstance(v, list) and psch is not None and \
                'merge' in (psch.get('x-kubernetes-patch-strategy') or '').split(','):
            target[k] = _merge_list(schemas, target.get(k) or [], v, psch.get('x-kubernetes-patch-merge-key'),
                                    psch.get('items'), pbase)
        elif isinstance(v, dict) and v.get('$patch') == 'delete':
            target.pop(k, None)
        else:
            target[k] = strategic_merge(schemas, target.get(k), v, psch, pbase)
    return target


def _merge_list(schemas, cur, patch, key, item_sch, base):
    out = copy.deepcopy(cur)
    if key is None:  # a list of scalars merged as a set
        return out + [x for x in patch if x not in out]
    for item in patch:
        if not isinstance(item, dict):
            continue
        at = [i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == item.get(key)]
        if item.get('$patch') == 'delete':
            out = [x for i, x in enumerate(out) if i not in at]
        elif at:
            out[at[0]] = strategic_merge(schemas, out[at[0]], item, item_sch, base)
        else:
            out.append(strategic_merge(schemas, {}, item, item_sch, base))
    return out
