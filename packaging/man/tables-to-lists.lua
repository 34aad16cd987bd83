-- For the man pages (make man): a table of the docs becomes a list, one
-- item per row: the first cell is the item's term, each other cell a
-- paragraph "Header: cell". tbl cannot fit the docs' wide tables into 80
-- columns (groff warns on every row, and lintian with it); a list reads
-- well at any width.
local utils = pandoc.utils

local function inlines(blocks)
  return utils.blocks_to_inlines(blocks or {})
end

function Table(tbl)
  local simple = utils.to_simple_table(tbl)
  local items = {}
  for _, row in ipairs(simple.rows) do
    local paras = {}
    for i = 2, #row do
      local head, body = inlines(simple.headers[i]), inlines(row[i])
      local para = {}
      if #head > 0 then
        para = { pandoc.Strong(head), pandoc.Str(":"), pandoc.Space() }
      end
      for _, x in ipairs(body) do
        table.insert(para, x)
      end
      table.insert(paras, pandoc.Para(para))
    end
    table.insert(items, { inlines(row[1]), { paras } })
  end
  return pandoc.DefinitionList(items)
end
